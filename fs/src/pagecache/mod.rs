//! The page cache (placeholder docs while building).

pub mod xarray;

#[cfg(test)]
mod testutil;
