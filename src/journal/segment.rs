//! Segment files: the append-only byte log that holds every record, named by first position.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use bytes::{Bytes, BytesMut};

use super::record::{FRAME_HEADER_LEN, FrameError, compacted_span, frame_header};
use super::types::Position;

const SUFFIX: &str = ".seg";

/// Where a record lives: segment id (its first position), byte offset and frame length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Location {
    pub segment: u64,
    pub offset: u64,
    pub len: u32,
}

/// The path of the segment whose first record has position `first`.
pub(crate) fn segment_path(dir: &Path, first: Position) -> PathBuf {
    dir.join(format!("{first:020}{SUFFIX}"))
}

/// Ids (first positions) of all segment files in `dir`, ascending.
pub(crate) fn list_segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut ids = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(id) = name.strip_suffix(SUFFIX).and_then(|n| n.parse().ok()) {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Makes a file creation or removal in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The segment the writer appends to.
#[derive(Debug)]
pub(crate) struct ActiveSegment {
    pub id: u64,
    file: File,
    pub len: u64,
}

impl ActiveSegment {
    /// Creates a new, empty segment file and makes its existence durable.
    pub fn create(dir: &Path, id: u64) -> io::Result<Self> {
        let file = OpenOptions::new()
            .create_new(true)
            .read(true)
            .append(true)
            .mode(0o600)
            .open(segment_path(dir, id))?;
        sync_dir(dir)?;
        Ok(Self { id, file, len: 0 })
    }

    /// Opens an existing segment for appending, cutting anything past `len` (an unacknowledged tail).
    pub fn open(dir: &Path, id: u64, len: u64) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(segment_path(dir, id))?;
        if file.metadata()?.len() != len {
            file.set_len(len)?;
            file.sync_all()?;
        }
        let mut file = file;
        file.seek(SeekFrom::Start(len))?;
        Ok(Self { id, file, len })
    }

    /// Appends bytes; returns the offset they start at. Not durable until [`Self::sync`].
    pub fn append(&mut self, bytes: &[u8]) -> io::Result<u64> {
        let offset = self.len;
        self.file.write_all(bytes)?;
        self.len += bytes.len() as u64;
        Ok(offset)
    }

    /// Makes every appended byte durable (fdatasync).
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

/// Shared read handles on segment files, for random access by location.
#[derive(Debug, Default)]
pub(crate) struct SegmentFiles {
    dir: PathBuf,
    open: RwLock<HashMap<u64, Arc<File>>>,
}

impl SegmentFiles {
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            open: RwLock::default(),
        }
    }

    fn file(&self, segment: u64) -> io::Result<Arc<File>> {
        if let Some(file) = self
            .open
            .read()
            .expect("segment map poisoned")
            .get(&segment)
        {
            return Ok(file.clone());
        }
        let file = Arc::new(File::open(segment_path(&self.dir, segment))?);
        self.open
            .write()
            .expect("segment map poisoned")
            .insert(segment, file.clone());
        Ok(file)
    }

    /// Drops the cached handle on `segment`, after compaction replaced its file: later reads
    /// open the new file, and the old one is freed once reads in flight finish.
    pub fn forget(&self, segment: u64) {
        self.open
            .write()
            .expect("segment map poisoned")
            .remove(&segment);
    }

    /// Reads the whole frame at `location`.
    pub fn read_frame(&self, location: Location) -> io::Result<Bytes> {
        let file = self.file(location.segment)?;
        let mut buf = BytesMut::zeroed(location.len as usize);
        file.read_exact_at(&mut buf, location.offset)?;
        Ok(buf.freeze())
    }
}

/// A sequential reader of frames across consecutive segments.
#[derive(Debug)]
pub(crate) struct FrameCursor {
    dir: PathBuf,
    segment: u64,
    offset: u64,
    reader: BufReader<File>,
}

/// One frame read by a [`FrameCursor`].
#[derive(Debug)]
pub(crate) struct RawFrame {
    pub payload: Bytes,
    pub crc: u32,
    /// Whether the frame is compacted (its payload ends with the span trailer).
    pub compacted: bool,
    pub location: Location,
}

impl FrameCursor {
    /// Positions a cursor at `offset` in `segment`.
    pub fn open(dir: &Path, segment: u64, offset: u64) -> io::Result<Self> {
        let mut file = File::open(segment_path(dir, segment))?;
        file.seek(SeekFrom::Start(offset))?;
        Ok(Self {
            dir: dir.to_owned(),
            segment,
            offset,
            reader: BufReader::with_capacity(1 << 20, file),
        })
    }

    /// Reads the next frame. At the clean end of a segment, continues in the segment that starts
    /// at `next_position` if it exists; `Ok(None)` means the clean end of the log.
    pub fn next_frame(&mut self, next_position: Position) -> Result<Option<RawFrame>, CursorError> {
        let mut header = [0u8; FRAME_HEADER_LEN];
        let got = read_up_to(&mut self.reader, &mut header)?;
        if got == 0 {
            let next = segment_path(&self.dir, next_position);
            if next_position != self.segment && next.exists() {
                *self = Self::open(&self.dir, next_position, 0)?;
                return self.next_frame(next_position);
            }
            return Ok(None);
        }
        if got < FRAME_HEADER_LEN {
            return Err(CursorError::Frame(FrameError::Incomplete, self.here()));
        }
        let header = frame_header(&header).map_err(|e| CursorError::Frame(e, self.here()))?;
        let len = header.len;
        let mut payload = BytesMut::zeroed(len);
        if read_up_to(&mut self.reader, &mut payload)? < len {
            return Err(CursorError::Frame(FrameError::Incomplete, self.here()));
        }
        let mut frame_len = FRAME_HEADER_LEN + len;
        if header.compacted {
            // The rest of the span is a hole; the span itself is checked with the payload's crc.
            let span = compacted_span(&payload);
            if span < frame_len || span > FRAME_HEADER_LEN + super::record::MAX_PAYLOAD_LEN {
                return Err(CursorError::Frame(
                    FrameError::Corrupt(format!("compacted frame spans {span} bytes")),
                    self.here(),
                ));
            }
            self.reader.seek_relative((span - frame_len) as i64)?;
            frame_len = span;
        }
        let location = Location {
            segment: self.segment,
            offset: self.offset,
            len: frame_len as u32,
        };
        self.offset += u64::from(location.len);
        Ok(Some(RawFrame {
            payload: payload.freeze(),
            crc: header.crc,
            compacted: header.compacted,
            location,
        }))
    }

    fn here(&self) -> (u64, u64) {
        (self.segment, self.offset)
    }
}

/// Reading a frame failed: an I/O error, or a bad frame at `(segment, offset)`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CursorError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("{0} at (segment, offset) {1:?}")]
    Frame(FrameError, (u64, u64)),
}

fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
