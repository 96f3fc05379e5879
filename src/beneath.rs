//! Beneath: the file operations of an update, done so that no path walk can leave the worktree,
//! whatever another process does at the same time.
//!
//! The app's container usually has the checkout bind-mounted read-write, while pullstart runs
//! as root on the host. A process in the container can swap a directory of the checkout with a
//! symlink to anywhere (`renameat2(RENAME_EXCHANGE)`) between a check of the path and its use,
//! so a check followed by an operation on the path proves nothing. Here nothing is done by path
//! from the worktree's root: each leading directory is opened relative to its parent's
//! descriptor with `O_NOFOLLOW | O_DIRECTORY` (a symlink fails to open), and the last component
//! is created, renamed, removed or inspected relative to its directory's descriptor (the `*at`
//! system calls), never followed. Whatever is swapped meanwhile, an operation lands in a
//! directory that was a real directory inside the worktree when it was opened; a rename cannot
//! move that directory out of the bind mount (the kernel refuses renames across mounts), so it
//! is still inside the worktree.
//!
//! Per-component walking works on every kernel (`openat2`'s `RESOLVE_BENEATH` would need 5.6
//! and is refused by some seccomp profiles); its cost is kept down by keeping the directories
//! of the last path open, since the paths of an update come sorted.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use gix::bstr::{BStr, BString};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

/// The worktree, held open by a descriptor of its root, with the directories of the last path
/// walked.
pub struct Worktree {
    root: Rc<OwnedFd>,
    root_path: PathBuf,
    /// The leading directories of the last path walked, outermost first, each held open.
    walked: Vec<Walked>,
}

struct Walked {
    name: Vec<u8>,
    fd: Rc<OwnedFd>,
}

/// A name in a directory of the worktree that is held open: where an operation happens.
pub struct Place {
    dir: Rc<OwnedFd>,
    dir_path: PathBuf,
    name: OsString,
}

/// Opens a directory for walking only: no read permission needed, as git needs none.
#[cfg(any(target_os = "linux", target_os = "android"))]
const WALK: OFlags = OFlags::PATH;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const WALK: OFlags = OFlags::RDONLY;

impl Worktree {
    /// Open the worktree at `root`. The root itself is the operator's path and may be reached
    /// through symlinks; only what lies below it is walked without following any.
    pub fn open(root: &Path) -> std::io::Result<Worktree> {
        let fd = rustix::fs::open(
            root,
            WALK | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Worktree {
            root: Rc::new(fd),
            root_path: root.to_path_buf(),
            walked: Vec::new(),
        })
    }

    /// Open the worktree at `path` below `root` (a submodule's), walking every component of
    /// `path` without following a symlink; `None` when one is not a real directory.
    pub fn open_beneath(root: &Path, path: &BStr) -> std::io::Result<Option<Worktree>> {
        let mut top = Worktree::open(root)?;
        let components: Vec<&[u8]> = path.split(|b| *b == b'/').collect();
        if !top.walk(&components, None)? {
            return Ok(None);
        }
        Ok(Some(Worktree {
            root: top.innermost(),
            root_path: top.path_of(&components),
            walked: Vec::new(),
        }))
    }

    /// Where `path` (relative to the worktree, `/`-separated) is, once its leading directories
    /// are open. `None` when one of them is not a real directory (a symlink or a file), or is
    /// missing and `create` is `None`; with `create`, a missing one is made and its path
    /// recorded there.
    pub fn place(
        &mut self,
        path: &BStr,
        create: Option<&mut Vec<BString>>,
    ) -> std::io::Result<Option<Place>> {
        let components: Vec<&[u8]> = path.split(|b| *b == b'/').collect();
        let (last, leading) = components
            .split_last()
            .expect("split yields at least one item");
        if !self.walk(leading, create)? {
            return Ok(None);
        }
        Ok(Some(Place {
            dir: self.innermost(),
            dir_path: self.path_of(leading),
            name: OsStr::from_bytes(last).to_owned(),
        }))
    }

    /// Remove the leading directories of `path` that are empty, innermost first, as git does
    /// after removing a file; stops at the first one that is not empty (or not a directory).
    pub fn remove_empty_parents(&mut self, path: &BStr) -> std::io::Result<()> {
        let components: Vec<&[u8]> = path.split(|b| *b == b'/').collect();
        let leading = &components[..components.len() - 1];
        if !self.walk(leading, None)? {
            return Ok(());
        }
        while let Some(innermost) = self.walked.last() {
            let parent = match self.walked.len() {
                1 => self.root.clone(),
                depth => self.walked[depth - 2].fd.clone(),
            };
            match rustix::fs::unlinkat(&*parent, innermost.name.as_slice(), AtFlags::REMOVEDIR) {
                Ok(()) => drop(self.walked.pop()),
                // Not empty (or no longer that directory): the directories held stay valid.
                Err(Errno::NOTEMPTY | Errno::EXIST | Errno::NOENT | Errno::NOTDIR) => return Ok(()),
                Err(err) => return Err(err.into()),
            }
        }
        Ok(())
    }

    /// Remove the empty directory at `path` (one that this update created and no longer needs).
    pub fn remove_directory(&mut self, path: &BStr) -> std::io::Result<()> {
        let Some(place) = self.place(path, None)? else {
            return Ok(());
        };
        // It may hold the walk's open directories: open them afresh next time.
        self.walked.clear();
        place.remove_dir()
    }

    /// Open the directories of `leading` that the last walk did not already hold.
    fn walk(
        &mut self,
        leading: &[&[u8]],
        mut create: Option<&mut Vec<BString>>,
    ) -> std::io::Result<bool> {
        let kept = self
            .walked
            .iter()
            .zip(leading)
            .take_while(|(walked, component)| walked.name == **component)
            .count();
        self.walked.truncate(kept);
        for (depth, component) in leading.iter().enumerate().skip(kept) {
            let parent = self.innermost();
            let fd = match open_directory(&parent, component) {
                Ok(fd) => fd,
                Err(Errno::NOENT) => {
                    let Some(created) = create.as_deref_mut() else {
                        return Ok(false);
                    };
                    match rustix::fs::mkdirat(&*parent, *component, Mode::from_raw_mode(0o777)) {
                        Ok(()) => created.push(leading[..=depth].join(&b'/').into()),
                        Err(Errno::EXIST) => {}
                        Err(err) => return Err(err.into()),
                    }
                    match open_directory(&parent, component) {
                        Ok(fd) => fd,
                        Err(Errno::LOOP | Errno::NOTDIR) => return Ok(false),
                        Err(err) => return Err(err.into()),
                    }
                }
                // ELOOP: a symlink; ENOTDIR: a file. Neither is walked through.
                Err(Errno::LOOP | Errno::NOTDIR) => return Ok(false),
                Err(err) => return Err(err.into()),
            };
            self.walked.push(Walked {
                name: component.to_vec(),
                fd: Rc::new(fd),
            });
        }
        Ok(true)
    }

    fn innermost(&self) -> Rc<OwnedFd> {
        self.walked
            .last()
            .map_or_else(|| self.root.clone(), |walked| walked.fd.clone())
    }

    fn path_of(&self, leading: &[&[u8]]) -> PathBuf {
        let mut path = self.root_path.clone();
        for component in leading {
            path.push(OsStr::from_bytes(component));
        }
        path
    }
}

fn open_directory(parent: &OwnedFd, name: &[u8]) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(
        parent,
        name,
        WALK | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

impl Place {
    /// The path, for messages only: operations never walk it.
    pub fn path(&self) -> PathBuf {
        self.dir_path.join(&self.name)
    }

    /// Another name in the same directory.
    pub fn sibling(&self, name: OsString) -> Place {
        Place {
            dir: self.dir.clone(),
            dir_path: self.dir_path.clone(),
            name,
        }
    }

    pub fn name(&self) -> &OsStr {
        &self.name
    }

    /// The names in this place's directory.
    pub fn names_beside(&self) -> std::io::Result<Vec<OsString>> {
        let fd = rustix::fs::openat(
            &*self.dir,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let mut names = Vec::new();
        for entry in rustix::fs::Dir::read_from(&fd)? {
            let name = entry?.file_name().to_bytes().to_vec();
            if name != b"." && name != b".." {
                names.push(OsString::from_vec(name));
            }
        }
        Ok(names)
    }

    /// What is at this name, not following a symlink; `None` when nothing is.
    pub fn stat(&self) -> std::io::Result<Option<rustix::fs::Stat>> {
        match rustix::fs::statat(&*self.dir, &*self.name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(Some(stat)),
            Err(Errno::NOENT) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    pub fn remove_file(&self) -> std::io::Result<()> {
        Ok(rustix::fs::unlinkat(
            &*self.dir,
            &*self.name,
            AtFlags::empty(),
        )?)
    }

    pub fn remove_dir(&self) -> std::io::Result<()> {
        Ok(rustix::fs::unlinkat(
            &*self.dir,
            &*self.name,
            AtFlags::REMOVEDIR,
        )?)
    }

    /// Create an empty directory here.
    pub fn create_dir(&self) -> std::io::Result<()> {
        Ok(rustix::fs::mkdirat(
            &*self.dir,
            &*self.name,
            Mode::from_raw_mode(0o777),
        )?)
    }

    /// Rename `from`, a name in the same directory, to this one.
    pub fn rename_from(&self, from: &OsStr) -> std::io::Result<()> {
        Ok(rustix::fs::renameat(
            &*self.dir,
            from,
            &*self.dir,
            &*self.name,
        )?)
    }

    /// Create a new file here (never through a symlink: `O_EXCL` refuses any existing name),
    /// with `mode` masked by the umask.
    pub fn create_new_file(&self, mode: u32) -> std::io::Result<File> {
        let fd = rustix::fs::openat(
            &*self.dir,
            &*self.name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        )?;
        Ok(File::from(fd))
    }

    /// Create a symlink here pointing at `target`.
    pub fn create_symlink(&self, target: &Path) -> std::io::Result<()> {
        Ok(rustix::fs::symlinkat(target, &*self.dir, &*self.name)?)
    }

    /// The target of the symlink here.
    pub fn read_link(&self) -> std::io::Result<Vec<u8>> {
        Ok(rustix::fs::readlinkat(&*self.dir, &*self.name, Vec::new())?.into_bytes())
    }

    /// The file here opened for reading if it is a regular file; `None` for anything else. Never
    /// follows a symlink, and never blocks on a FIFO.
    pub fn open_regular_file(&self) -> std::io::Result<Option<File>> {
        let fd = match rustix::fs::openat(
            &*self.dir,
            &*self.name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::LOOP | Errno::NOENT) => return Ok(None),
            Err(err) => return Err(err.into()),
        };
        let file = File::from(fd);
        Ok(file.metadata()?.is_file().then_some(file))
    }

    /// Remove the directory here and the directories inside it, if there is nothing else in
    /// them; fails with "directory not empty" otherwise. Not a directory: nothing to do.
    pub fn remove_empty_tree(&self) -> std::io::Result<()> {
        match self.stat()? {
            Some(stat) if is_directory(&stat) => remove_empty_tree(&self.dir, &self.name),
            _ => Ok(()),
        }
    }
}

fn remove_empty_tree(parent: &OwnedFd, name: &OsStr) -> std::io::Result<()> {
    let fd = rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut subdirectories = Vec::new();
    for entry in rustix::fs::Dir::read_from(&fd)? {
        let entry = entry?;
        let entry_name = entry.file_name().to_bytes();
        if entry_name == b"." || entry_name == b".." {
            continue;
        }
        let directory = match entry.file_type() {
            FileType::Directory => true,
            FileType::Unknown => rustix::fs::statat(&fd, entry_name, AtFlags::SYMLINK_NOFOLLOW)
                .is_ok_and(|stat| is_directory(&stat)),
            _ => false,
        };
        if directory {
            subdirectories.push(OsStr::from_bytes(entry_name).to_owned());
        }
    }
    for subdirectory in subdirectories {
        remove_empty_tree(&fd, &subdirectory)?;
    }
    // Fails with "directory not empty" if anything but directories was inside.
    Ok(rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR)?)
}

pub fn is_directory(stat: &rustix::fs::Stat) -> bool {
    FileType::from_raw_mode(stat.st_mode) == FileType::Directory
}

pub fn is_symlink(stat: &rustix::fs::Stat) -> bool {
    FileType::from_raw_mode(stat.st_mode) == FileType::Symlink
}

pub fn is_regular_file(stat: &rustix::fs::Stat) -> bool {
    FileType::from_raw_mode(stat.st_mode) == FileType::RegularFile
}

/// The index's stat data of what `stat` describes, as gix computes it from an `lstat`
/// (`gix::index::entry::Stat::from_fs`), which takes only a path.
// The field types of `stat` differ between platforms; the casts are no-ops on some.
#[allow(clippy::unnecessary_cast)]
pub fn index_stat(stat: &rustix::fs::Stat) -> gix::index::entry::Stat {
    use gix::index::entry::stat::Time;
    let time = |secs: i64, nsecs: u64| match (u32::try_from(secs), u32::try_from(nsecs)) {
        (Ok(secs), Ok(nsecs)) => Time { secs, nsecs },
        _ => Time::default(),
    };
    gix::index::entry::Stat {
        mtime: time(stat.st_mtime as i64, stat.st_mtime_nsec as u64),
        ctime: time(stat.st_ctime as i64, stat.st_ctime_nsec as u64),
        // Truncated to 32 bits, as git and gix do.
        dev: stat.st_dev as u32,
        ino: stat.st_ino as u32,
        uid: stat.st_uid,
        gid: stat.st_gid,
        size: stat.st_size as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_stat_is_what_gix_computes_from_lstat() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), "x").unwrap();
        let mut tree = Worktree::open(dir.path()).unwrap();
        let place = tree.place("f".into(), None).unwrap().unwrap();
        let ours = index_stat(&place.stat().unwrap().unwrap());
        let metadata =
            gix::index::fs::Metadata::from_path_no_follow(&dir.path().join("f")).unwrap();
        assert_eq!(ours, gix::index::entry::Stat::from_fs(&metadata).unwrap());
    }

    #[test]
    fn a_symlink_or_a_file_as_a_leading_component_is_not_walked() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).unwrap();
        std::fs::write(dir.path().join("file"), "x").unwrap();
        let mut tree = Worktree::open(dir.path()).unwrap();
        let mut created = Vec::new();
        assert!(tree
            .place("link/x".into(), Some(&mut created))
            .unwrap()
            .is_none());
        assert!(tree
            .place("file/x".into(), Some(&mut created))
            .unwrap()
            .is_none());
        assert!(created.is_empty());
        let place = tree
            .place("a/b/c".into(), Some(&mut created))
            .unwrap()
            .unwrap();
        assert_eq!(created, vec![BString::from("a"), BString::from("a/b")]);
        assert_eq!(place.path(), dir.path().join("a/b/c"));
        assert!(dir.path().join("a/b").is_dir());
    }

    #[test]
    fn a_directory_opened_before_a_swap_is_written_where_it_went_not_through_the_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        let mut tree = Worktree::open(dir.path()).unwrap();
        let place = tree.place("data/f".into(), None).unwrap().unwrap();
        std::fs::rename(dir.path().join("data"), dir.path().join("moved")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("data")).unwrap();
        place.create_new_file(0o666).unwrap();
        assert!(dir.path().join("moved/f").is_file());
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        // The walk keeps the directory it opened, wherever it went; it never follows the symlink.
        let again = tree.place("data/g".into(), None).unwrap().unwrap();
        again.create_new_file(0o666).unwrap();
        assert!(dir.path().join("moved/g").is_file());
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        // A fresh walk meets the symlink and stops.
        let mut fresh = Worktree::open(dir.path()).unwrap();
        assert!(fresh.place("data/h".into(), None).unwrap().is_none());
    }

    #[test]
    fn a_submodule_s_worktree_is_not_opened_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("lib/sub")).unwrap();
        std::fs::create_dir_all(outside.path().join("sub")).unwrap();
        let mut sub = Worktree::open_beneath(dir.path(), "lib/sub".into())
            .unwrap()
            .unwrap();
        let place = sub.place("f".into(), None).unwrap().unwrap();
        assert_eq!(place.path(), dir.path().join("lib/sub/f"));
        std::fs::rename(dir.path().join("lib"), dir.path().join("lib.real")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("lib")).unwrap();
        assert!(Worktree::open_beneath(dir.path(), "lib/sub".into())
            .unwrap()
            .is_none());
        // One opened before the swap still writes where the directory went.
        place.create_new_file(0o666).unwrap();
        assert!(dir.path().join("lib.real/sub/f").is_file());
        assert_eq!(
            std::fs::read_dir(outside.path().join("sub"))
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn empty_parents_are_removed_up_to_the_first_that_is_not_empty() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b/c")).unwrap();
        std::fs::write(dir.path().join("a/keep"), "x").unwrap();
        let mut tree = Worktree::open(dir.path()).unwrap();
        tree.remove_empty_parents("a/b/c/gone".into()).unwrap();
        assert!(!dir.path().join("a/b").exists());
        assert!(dir.path().join("a/keep").is_file());
    }
}
