//! The test rig and small helpers shared by the suite.

use alloc::sync::Arc;
use alloc::vec::Vec;

use foliage_drivers::selftest::{TestEnv, TestFailure};

use crate::block::sync::write_at;
use crate::block::{BioFlags, BlockDevice, Queue};
use crate::iomap::testfs::{AllocPolicy, ExtKind, MemFile, MemFs, MemFsConfig, TraceDisk};
use crate::iomap::{IomapConfig, IomapContext};
use crate::pagecache::{CacheConfig, Folio, PageCache, DEFAULT_MAX_ORDER};
use crate::platform::Platform;

/// How a [`Rig`] is built.
#[derive(Clone, Copy, Debug)]
pub struct RigOpts {
    /// Filesystem block size.
    pub block_size: u64,
    /// Page-cache budget (dirty thresholds at the budget: no background writeback unless a test
    /// lowers them).
    pub cache_bytes: u64,
    /// Largest folio order.
    pub max_order: u32,
    /// Write allocation policy.
    pub policy: AllocPolicy,
    /// Engine tuning.
    pub config: IomapConfig,
}

impl RigOpts {
    /// 32 MiB of cache, delayed allocation, default tuning.
    pub fn new(block_size: u64) -> Self {
        Self {
            block_size,
            cache_bytes: 32 << 20,
            max_order: DEFAULT_MAX_ORDER,
            policy: AllocPolicy::Delalloc,
            config: IomapConfig::default(),
        }
    }
}

/// A formatted test filesystem with a traced device and a private cache.
pub struct Rig {
    /// The platform.
    pub platform: Arc<dyn Platform>,
    /// The trace right under the engine.
    pub trace: Arc<TraceDisk>,
    /// The device under the queue.
    pub dev: Arc<dyn BlockDevice>,
    /// The page cache.
    pub cache: Arc<PageCache>,
    /// The engine context.
    pub ctx: Arc<IomapContext>,
    /// The filesystem.
    pub fs: Arc<MemFs>,
    /// How it was built.
    pub opts: RigOpts,
}

impl Rig {
    /// A rig on `scratch0`.
    pub fn new(env: &TestEnv, opts: RigOpts) -> Result<Self, TestFailure> {
        let dev = env.device("scratch0")?;
        Self::on(env.platform.clone(), dev, opts)
    }

    /// A rig on `dev`.
    pub fn on(
        platform: Arc<dyn Platform>,
        dev: Arc<dyn BlockDevice>,
        opts: RigOpts,
    ) -> Result<Self, TestFailure> {
        let trace = TraceDisk::new(Arc::new(Queue::new(dev.clone())));
        let (cache, ctx) = Self::stack(&platform, &trace, &opts)?;
        let mut cfg = MemFsConfig::new(opts.block_size);
        cfg.policy = opts.policy;
        let fs = MemFs::format(&ctx, cfg)?;
        trace.clear();
        Ok(Self { platform, trace, dev, cache, ctx, fs, opts })
    }

    fn stack(
        platform: &Arc<dyn Platform>,
        trace: &Arc<TraceDisk>,
        opts: &RigOpts,
    ) -> Result<(Arc<PageCache>, Arc<IomapContext>), TestFailure> {
        let mut cc = CacheConfig::new(opts.cache_bytes);
        cc.background_dirty_bytes = opts.cache_bytes;
        cc.hard_dirty_bytes = opts.cache_bytes;
        cc.max_order = opts.max_order;
        let cache = PageCache::new(platform.clone(), cc)?;
        let ctx = IomapContext::new(trace.clone(), cache.clone(), opts.block_size, opts.config)?;
        Ok((cache, ctx))
    }

    /// The filesystem as a fresh mount would see it: a new cache and context over the same
    /// device, the metadata read back.
    pub fn remount(&self) -> Result<Arc<MemFs>, TestFailure> {
        let (_cache, ctx) = Self::stack(&self.platform, &self.trace, &self.opts)?;
        let mut cfg = MemFsConfig::new(self.opts.block_size);
        cfg.policy = self.opts.policy;
        Ok(MemFs::mount(&ctx, cfg)?)
    }

    /// Mounts the filesystem found on `dev` (`None` when it holds no metadata record yet).
    pub fn mount_on(
        platform: Arc<dyn Platform>,
        dev: Arc<dyn BlockDevice>,
        opts: RigOpts,
    ) -> Result<Option<Arc<MemFs>>, TestFailure> {
        let trace = TraceDisk::new(Arc::new(Queue::new(dev)));
        let (_cache, ctx) = Self::stack(&platform, &trace, &opts)?;
        let mut cfg = MemFsConfig::new(opts.block_size);
        cfg.policy = opts.policy;
        match MemFs::mount(&ctx, cfg) {
            Ok(fs) => Ok(Some(fs)),
            Err(crate::Errno::EINVAL) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Block size.
    pub fn bs(&self) -> u64 {
        self.opts.block_size
    }

    /// A new empty file.
    pub fn file(&self) -> Result<Arc<MemFile>, TestFailure> {
        Ok(self.fs.create()?)
    }

    /// A file of `blocks` written blocks holding `data` (padded with zeros) at free disk blocks
    /// starting at `disk_block`, size `data.len()`. The device write is not traced.
    pub fn mapped_file(
        &self,
        disk_block: u64,
        blocks: u64,
        data: &[u8],
    ) -> Result<Arc<MemFile>, TestFailure> {
        let f = self.file()?;
        self.poke(disk_block * self.bs(), blocks * self.bs(), data)?;
        f.set_extent(0, blocks, ExtKind::Mapped(disk_block), false)?;
        f.set_size(data.len() as u64);
        Ok(f)
    }

    /// Writes `data` padded with zeros to `len` bytes at device byte `offset`, untraced.
    pub fn poke(&self, offset: u64, len: u64, data: &[u8]) -> Result<(), TestFailure> {
        let mut buf = alloc::vec![0u8; len as usize];
        let n = data.len().min(buf.len());
        buf[..n].copy_from_slice(&data[..n]);
        write_at(&*self.trace, &self.platform, offset, &buf, BioFlags::empty())?;
        self.trace.clear();
        Ok(())
    }

    /// Device bytes, untraced.
    pub fn peek(&self, offset: u64, len: usize) -> Result<Vec<u8>, TestFailure> {
        let mut buf = alloc::vec![0u8; len];
        crate::block::sync::read_at(&*self.trace, &self.platform, offset, &mut buf)?;
        self.trace.clear();
        Ok(buf)
    }

    /// A disk block far from the metadata and from the allocator's first picks.
    pub fn spare_block(&self, n: u64) -> u64 {
        (4 << 20) / self.bs() + n
    }
}

/// The cached folio covering page `index` of `file`.
pub fn folio(file: &MemFile, index: u64) -> Result<Arc<Folio>, TestFailure> {
    file.file().mapping().get(index).ok_or_else(|| TestFailure(alloc::format!("no folio at index {index}")))
}

/// Blocks of `folio` that are uptodate / dirty, as index lists.
pub fn block_bits(folio: &Folio) -> (Vec<usize>, Vec<usize>) {
    let n = folio.blocks_per_folio();
    let up = (0..n).filter(|&b| folio.is_block_uptodate(b)).collect();
    let dirty = (0..n).filter(|&b| folio.is_block_dirty(b)).collect();
    (up, dirty)
}

/// `len` bytes of a position-dependent pattern seeded with `seed`.
pub fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u32).wrapping_mul(31).wrapping_add(seed as u32 * 7 + 1) as u8).collect()
}

/// The disk block holding written file block `file_block` of `f`.
pub fn mapped_block(f: &MemFile, file_block: u64) -> Result<u64, TestFailure> {
    for e in f.extents() {
        if e.start <= file_block && file_block < e.end() {
            if let ExtKind::Mapped(d) = e.kind {
                return Ok(d + file_block - e.start);
            }
        }
    }
    Err(TestFailure(alloc::format!("file block {file_block} not written: {:?}", f.extents())))
}
