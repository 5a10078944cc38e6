//! Page-cache tests beyond the per-module unit tests: the §9 scenarios, mapping behaviour,
//! threads, and the LRU/reclaim model test.

mod common;
mod lru_model;
mod mapping;
mod overwrite;
mod scenarios;
mod threads;
