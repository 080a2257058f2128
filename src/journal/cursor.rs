//! Sequential reading of the global log from any position.

use std::path::Path;

use super::JournalError;
use super::index::Index;
use super::record::decode_payload;
use super::segment::FrameCursor;
use super::types::{EventFilter, Position, RecordedEvent};

/// Reads committed records in global order, starting from a position.
#[derive(Debug)]
pub(crate) struct LogCursor {
    frames: FrameCursor,
    next: Position,
}

impl LogCursor {
    /// Positions a cursor so that the next record it yields is `from`.
    pub fn open(segments_dir: &Path, index: &Index, from: Position) -> Result<Self, JournalError> {
        let (first, segment, offset) = index.batch_floor(from)?.ok_or_else(|| {
            JournalError::Corrupt(format!("no batch index entry at or before position {from}"))
        })?;
        let mut cursor = Self {
            frames: FrameCursor::open(segments_dir, segment, offset)?,
            next: first,
        };
        while cursor.next < from {
            cursor.skip()?;
        }
        Ok(cursor)
    }

    /// The position of the next record this cursor yields.
    pub fn next_position(&self) -> Position {
        self.next
    }

    fn skip(&mut self) -> Result<(), JournalError> {
        match self.frames.next_frame(self.next)? {
            Some(_) => {
                self.next += 1;
                Ok(())
            }
            None => Err(JournalError::Corrupt(format!(
                "log ends before position {}",
                self.next
            ))),
        }
    }

    /// Reads records below `until` (which must be committed): at most `scan` frames, keeping at
    /// most `max` that pass `filter`.
    pub fn read(
        &mut self,
        until: Position,
        max: usize,
        scan: usize,
        filter: &EventFilter,
    ) -> Result<Vec<RecordedEvent>, JournalError> {
        let mut out = Vec::new();
        let mut scanned = 0;
        while self.next < until && out.len() < max && scanned < scan {
            let frame = self.frames.next_frame(self.next)?.ok_or_else(|| {
                JournalError::Corrupt(format!("log ends before committed position {}", self.next))
            })?;
            let view = decode_payload(&frame.payload, frame.crc)?;
            if view.position() != self.next {
                return Err(JournalError::Corrupt(format!(
                    "expected position {} but found {}",
                    self.next,
                    view.position()
                )));
            }
            if filter.admits(view.stream()) {
                out.push(view.to_event(&frame.payload));
            }
            self.next += 1;
            scanned += 1;
        }
        Ok(out)
    }
}
