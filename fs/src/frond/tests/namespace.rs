//! Namespace operations with Linux's errors.

use super::*;
use crate::frond::inode::{S_IFDIR, S_IFLNK, S_IFREG};
use crate::Errno;

#[test]
fn create_lookup_remount_at_each_block_size() {
    for bs in [1024u32, 4096, 65536] {
        let (disk, fs) = fresh(bs, 16 << 20);
        let root = fs.root_ino();
        let a = fs.create(root, b"a", S_IFREG | 0o644, 1, 2).unwrap();
        let d = fs.mkdir(root, b"d", 0o755, 0, 0).unwrap();
        assert_eq!(fs.lookup(root, b"a"), Ok(a));
        assert_eq!(fs.lookup(root, b"d"), Ok(d));
        assert_eq!(fs.lookup(d, b".."), Ok(root));
        assert_eq!(fs.stat(root).unwrap().nlink, 3);
        let fs = remount(&disk, fs);
        assert_eq!(fs.lookup(root, b"a"), Ok(a));
        let st = fs.stat(a).unwrap();
        assert_eq!((st.mode, st.nlink, st.uid, st.gid, st.size), (S_IFREG | 0o644, 1, 1, 2, 0));
        assert_eq!(fs.stat(d).unwrap().mode, S_IFDIR | 0o755);
        assert_eq!(fs.lookup(root, b"zz"), Err(Errno::ENOENT));
        let l = fs.symlink(root, b"l", b"/a/b").unwrap();
        assert_eq!(fs.stat(l).unwrap().mode & 0o170000, S_IFLNK);
        assert_eq!(fs.readlink(l).unwrap(), b"/a/b");
        assert_clean(&fs);
        fs.unmount().unwrap();
        assert_image_clean(&disk);
    }
}
