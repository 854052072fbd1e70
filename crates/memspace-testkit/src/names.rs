//! Segment names and files of a test: each test gets names of its own (pid, tag, counter),
//! removed when the test ends, whether it passed or failed.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use memspace::Segment;

use crate::watchdog;

/// A segment name unique to this process, test and call: `mstest.PID.TAG.N`.
pub fn unique_name(tag: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "mstest.{}.{tag}.{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A segment name removed on drop, whether or not the test got that far and whether or not the
/// segment still exists (also by the [`Watchdog`](crate::Watchdog), which runs no destructor).
#[derive(Debug)]
pub struct Removal(String);

impl Removal {
    /// A fresh [`unique_name`], removed on drop.
    pub fn fresh(tag: &str) -> Self {
        Removal::of(&unique_name(tag))
    }

    /// Removes `name` on drop (for anonymous segments, whose names the library chooses, and
    /// for names a test spells itself).
    pub fn of(name: &impl ToString) -> Self {
        let name = name.to_string();
        watchdog::watch_name(&name);
        Removal(name)
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.0
    }

    /// The backing file of the segment in `/dev/shm`.
    pub fn path(&self) -> PathBuf {
        shm_path(&self.0)
    }

    /// The backing file, opened to read and write it.
    pub fn file(&self) -> SegmentFile {
        SegmentFile::open(&self.path())
    }
}

impl Drop for Removal {
    fn drop(&mut self) {
        watchdog::forget_name(&self.0);
        // `Segment::remove` refuses what is not a segment; a test that planted garbage under
        // the name removes its own file.
        if Segment::remove(&self.0).is_err() && !self.0.starts_with("file:") {
            let _ = std::fs::remove_file(shm_path(&self.0));
        }
    }
}

/// The backing file of segment `name`.
pub fn shm_path(name: &str) -> PathBuf {
    PathBuf::from(format!("/dev/shm/{}{name}", memspace::segment::SHM_PREFIX))
}

/// Whether segment `name` exists.
pub fn shm_exists(name: &str) -> bool {
    shm_path(name).exists()
}

/// Writes `bytes` as the backing file of segment `name`, with the mode a segment has (0600), as
/// a test that crafts a segment by hand needs: a wider mode would be refused on open.
///
/// # Panics
///
/// If the file cannot be written.
pub fn write_segment_file(name: &str, bytes: &[u8]) {
    write_file(&shm_path(name), bytes);
}

/// Writes `bytes` to `path` with a segment's mode (0600).
///
/// # Panics
///
/// If the file cannot be written.
pub fn write_file(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut file| file.write_all(bytes))
        .expect("write the segment's file");
}

/// A segment's backing file, to read and write its bytes as a hostile peer (or a stray tool)
/// would, behind the library's back.
#[derive(Debug)]
pub struct SegmentFile(File);

impl SegmentFile {
    /// Opens the file at `path` to read and write it.
    ///
    /// # Panics
    ///
    /// If it cannot be opened.
    pub fn open(path: &Path) -> Self {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap_or_else(|err| panic!("open the segment's file {}: {err}", path.display()));
        SegmentFile(file)
    }

    /// The open file.
    pub fn file(&self) -> &File {
        &self.0
    }

    /// The file's size.
    ///
    /// # Panics
    ///
    /// If `fstat` fails.
    pub fn len(&self) -> u64 {
        self.0.metadata().expect("fstat the segment's file").len()
    }

    /// Cuts the file to `len` bytes, or extends it with zeros.
    ///
    /// # Panics
    ///
    /// If `ftruncate` fails.
    pub fn set_len(&self, len: u64) {
        self.0.set_len(len).expect("truncate the segment's file");
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Everything in the file.
    ///
    /// # Panics
    ///
    /// If it cannot be read.
    pub fn bytes(&self) -> Vec<u8> {
        self.read(0, usize::try_from(self.len()).expect("a file in memory"))
    }

    /// `len` bytes at offset `at`.
    ///
    /// # Panics
    ///
    /// If they cannot be read.
    pub fn read(&self, at: u64, len: usize) -> Vec<u8> {
        let mut bytes = vec![0; len];
        self.0
            .read_exact_at(&mut bytes, at)
            .expect("read the segment's file");
        bytes
    }

    /// Where `needle` first stands in the file, if anywhere.
    pub fn find(&self, needle: &[u8]) -> Option<u64> {
        self.bytes()
            .windows(needle.len())
            .position(|window| window == needle)
            .map(|at| at as u64)
    }

    /// The little-endian `u64` at offset `at`.
    ///
    /// # Panics
    ///
    /// If it cannot be read.
    pub fn read_u64(&self, at: u64) -> u64 {
        let bytes = self.read(at, 8);
        u64::from_le_bytes(bytes.try_into().expect("eight bytes"))
    }

    /// Writes `bytes` at offset `at`.
    ///
    /// # Panics
    ///
    /// If they cannot be written.
    pub fn write(&self, at: u64, bytes: &[u8]) {
        self.0
            .write_all_at(bytes, at)
            .expect("write the segment's file");
    }

    /// Writes `value` as a little-endian `u64` at offset `at`.
    pub fn write_u64(&self, at: u64, value: u64) {
        self.write(at, &value.to_le_bytes());
    }
}

/// A fresh directory under the system's temporary directory, removed with its content on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates a directory named after [`unique_name`]`(tag)`.
    ///
    /// # Panics
    ///
    /// If it cannot be created.
    pub fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(unique_name(tag));
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        TempDir(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The segment name `file:DIR/FILE`.
    pub fn segment(&self, file: &str) -> String {
        format!(
            "{}{}",
            memspace::segment::FILE_PREFIX,
            self.0.join(file).display()
        )
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
