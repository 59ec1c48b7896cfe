//! The on-disk spool: a segment log of CRC-framed records plus a ledger.
//!
//! Layout of `spool.dir`:
//! ```text
//! 00000000000000000001.seg   append-only segments of records (see `record`)
//! 00000000000000000002.seg   ... a new one each start and every SEGMENT_BYTES
//! ledger                     two slots: what is finished (see `Position`)
//! dead/0000...0001.seg       dead letters, same record format
//! ```
//! Why not an embedded store: redb is a copy-on-write B-tree (every commit
//! rewrites pages up to the root, and each body would be copied into tree
//! pages, then freed again on delivery) and fjall is an LSM tree (a body is
//! written to its journal, again to a table on flush, and deleted through
//! tombstones that compaction must rewrite). A FIFO of large blobs that are
//! written once, read once and deleted in order is the case an append-only
//! log with whole-segment deletion serves with write amplification 1, and
//! the group commit we need (one fsync covering every append that arrived
//! while the previous one ran, or within `fsync: interval(..)`) is a loop
//! around `write` + `fdatasync`, not a knob we would have to find in a store.
//!
//! Crash safety:
//! - an acknowledged append was written and fdatasync'ed (and a new segment's
//!   directory entry fsync'ed) before the acknowledgement;
//! - a torn or corrupt tail (kill -9 during a write, a bad sector) is cut at
//!   the last record whose CRC and structure check out; the caller audits how
//!   many bytes went;
//! - the ledger is written after every finished batch, without fsync (it is
//!   fsync'ed at open, at shutdown and before segments are deleted): a
//!   `kill -9` loses nothing of it (the page cache survives the process), so
//!   only batches that were in flight are re-sent; after a power loss it may
//!   lag, which re-delivers (duplicates), never loses. It records
//!   completions out of order too (a batch finished while an older one is
//!   still in flight), so a slow batch does not make everything delivered
//!   behind it count as unfinished. A ledger whose both slots fail their CRC
//!   counts as empty: everything on disk is replayed.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::Spooled;
use super::record::{self, FRAME_HEADER};

/// A segment is closed and a new one started past this size.
pub const SEGMENT_BYTES: u64 = 8 << 20;
/// Ledger format 1: two 32-byte slots holding a watermark only.
const LEDGER_MAGIC_V1: &[u8; 4] = b"SGL1";
const SLOT_V1: u64 = 32;
/// Ledger format 2 (written by this build): two 4 KiB slots holding a
/// [`Position`].
const LEDGER_MAGIC: &[u8; 4] = b"SGL2";
const SLOT: u64 = 4096;
/// magic, counter, watermark, high, hole count.
const SLOT_HEAD: usize = 4 + 8 + 8 + 8 + 2;
/// Most holes one slot records; more are recorded by lowering `high`
/// (conservative: it can only re-deliver, never skip).
pub const MAX_HOLES: usize = 256;
const _: () = assert!(SLOT_HEAD + MAX_HOLES * 8 + 4 <= SLOT as usize);

/// Where one record lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loc {
    pub segment: u64,
    pub offset: u64,
    /// Whole frame length (header included).
    pub len: u64,
}

/// Bytes cut from a segment at recovery.
#[derive(Debug, Clone)]
pub struct Discarded {
    pub segment: String,
    pub offset: u64,
    pub bytes: u64,
    pub reason: String,
}

/// What was found on disk at start.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Unfinished records in order: sequence, location, batch (body emptied).
    pub records: Records,
    /// Segments still holding unfinished records: id → last sequence.
    pub segments: BTreeMap<u64, u64>,
    pub watermark: u64,
    pub next_seq: u64,
    /// Id for the next new segment.
    pub next_segment: u64,
    pub discarded: Vec<Discarded>,
    /// True when the ledger existed but neither slot was valid.
    pub ledger_reset: bool,
}

/// File name of a segment.
pub fn segment_name(id: u64) -> String {
    format!("{id:020}.seg")
}

/// Segment ids in `dir`, ascending.
pub fn list_segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut ids = Vec::new();
    for e in fs::read_dir(dir)? {
        let name = e?.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(id) = name
            .strip_suffix(".seg")
            .and_then(|n| n.parse::<u64>().ok())
        {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Good records of a segment: sequence, location, batch.
pub type Records = Vec<(u64, Loc, Spooled)>;

/// Scan one segment: every good record from the start, and how the scan
/// ended (None: clean end; Some: the offset and why the rest is bad).
fn scan(data: &[u8]) -> (Records, Option<(u64, String)>) {
    let mut out = Vec::new();
    let mut off = 0usize;
    while off < data.len() {
        let Some((n, crc)) = record::frame_len(&data[off..]) else {
            return (
                out,
                Some((off as u64, "torn or invalid frame header".into())),
            );
        };
        let end = off + FRAME_HEADER + n;
        if end > data.len() {
            return (out, Some((off as u64, "record cut short".into())));
        }
        match record::decode(&data[off + FRAME_HEADER..end], crc) {
            Ok((seq, mut item)) => {
                item.body = bytes::Bytes::new();
                let loc = Loc {
                    segment: 0,
                    offset: off as u64,
                    len: (end - off) as u64,
                };
                out.push((seq, loc, item));
            }
            Err(e) => return (out, Some((off as u64, e.to_string()))),
        }
        off = end;
    }
    (out, None)
}

/// Open `dir` (created if missing), cut bad tails, and list what is left to
/// deliver. Segments whose records are all finished are deleted.
pub fn recover(dir: &Path, finished: &Position) -> io::Result<Recovered> {
    fs::create_dir_all(dir)?;
    let mut r = Recovered {
        watermark: finished.watermark,
        ..Default::default()
    };
    // A sequence the ledger names is never handed out again.
    let mut max_seq = finished.watermark.max(finished.high);
    let ids = list_segments(dir)?;
    r.next_segment = ids.last().map_or(1, |l| l + 1);
    for id in ids {
        let path = dir.join(segment_name(id));
        let data = fs::read(&path)?;
        let (records, bad) = scan(&data);
        if let Some((offset, reason)) = bad {
            let f = OpenOptions::new().write(true).open(&path)?;
            f.set_len(offset)?;
            f.sync_all()?;
            r.discarded.push(Discarded {
                segment: segment_name(id),
                offset,
                bytes: data.len() as u64 - offset,
                reason,
            });
        }
        let mut last = None;
        for (seq, mut loc, item) in records {
            max_seq = max_seq.max(seq);
            if finished.is_finished(seq) {
                continue;
            }
            loc.segment = id;
            last = Some(seq);
            r.records.push((seq, loc, item));
        }
        match last {
            Some(l) => {
                r.segments.insert(id, l);
            }
            None => fs::remove_file(&path)?,
        }
    }
    // Sequences only grow, whatever order the files were listed in.
    r.records.sort_by_key(|(s, _, _)| *s);
    r.next_seq = max_seq + 1;
    Ok(r)
}

/// Read one record back (body included).
pub fn read(dir: &Path, loc: Loc) -> io::Result<Spooled> {
    let f = File::open(dir.join(segment_name(loc.segment)))?;
    let len = usize::try_from(loc.len).map_err(|_| io::Error::other("record too large"))?;
    let mut buf = vec![0u8; len];
    f.read_exact_at(&mut buf, loc.offset)?;
    let (n, crc) = record::frame_len(&buf).ok_or_else(|| io::Error::other("bad frame"))?;
    if n + FRAME_HEADER != buf.len() {
        return Err(io::Error::other("bad frame length"));
    }
    record::decode(&buf[FRAME_HEADER..], crc)
        .map(|(_, item)| item)
        .map_err(io::Error::other)
}

/// fsync a directory so a created or removed entry is durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The segment being appended to.
#[derive(Debug)]
pub struct Appender {
    dir: PathBuf,
    pub id: u64,
    file: File,
    pub len: u64,
}

impl Appender {
    /// Start segment `id` (a new file; its directory entry made durable).
    pub fn create(dir: &Path, id: u64) -> io::Result<Self> {
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(dir.join(segment_name(id)))?;
        sync_dir(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            id,
            file,
            len: 0,
        })
    }

    /// Move to a new segment once this one is big enough (call between groups).
    pub fn roll_if_full(&mut self) -> io::Result<()> {
        if self.len >= SEGMENT_BYTES {
            self.file.sync_data()?;
            *self = Self::create(&self.dir, self.id + 1)?;
        }
        Ok(())
    }

    /// Append one frame; on error the segment is cut back to where it was.
    pub fn write(&mut self, frame: &[u8]) -> io::Result<Loc> {
        let offset = self.len;
        if let Err(e) = self.file.write_all(frame) {
            // Never leave half a record behind a future one.
            let _ = self.file.set_len(offset);
            return Err(e);
        }
        self.len += frame.len() as u64;
        Ok(Loc {
            segment: self.id,
            offset,
            len: frame.len() as u64,
        })
    }

    /// Cut back to `len` (a group whose fsync failed).
    pub fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        self.len = len;
        Ok(())
    }

    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

/// Write the sequence number into an encoded frame and refresh its CRC.
pub fn stamp_seq(frame: &mut [u8], seq: u64) {
    // payload = version:u8 seq:u64 ...
    frame[FRAME_HEADER + 1..FRAME_HEADER + 9].copy_from_slice(&seq.to_le_bytes());
    let crc = crc32fast::hash(&frame[FRAME_HEADER..]);
    frame[4..8].copy_from_slice(&crc.to_le_bytes());
}

/// What is finished (delivered, dead-lettered, expired or purged): every
/// sequence at or below `watermark`, and every sequence at or below `high`
/// except the `holes` (ascending, each in `watermark+1..=high`). The holes are
/// the batches older than the newest finished one that were still queued
/// (in flight, or waiting for a retry) when the position was written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Position {
    pub watermark: u64,
    pub high: u64,
    pub holes: Vec<u64>,
}

impl Position {
    /// Everything at or below `watermark` is finished, nothing else known.
    pub fn upto(watermark: u64) -> Self {
        Self {
            watermark,
            high: watermark,
            holes: Vec::new(),
        }
    }

    /// Is `seq` finished according to this position?
    pub fn is_finished(&self, seq: u64) -> bool {
        seq <= self.watermark || (seq <= self.high && self.holes.binary_search(&seq).is_err())
    }

    /// The same claims or fewer, in at most [`MAX_HOLES`] holes: past that
    /// many, `high` drops to just below the first hole left out.
    fn bounded(&self) -> (u64, &[u64]) {
        let high = self.high.max(self.watermark);
        match self.holes.get(MAX_HOLES) {
            Some(first_out) => (first_out - 1, &self.holes[..MAX_HOLES]),
            None => (high, &self.holes),
        }
    }
}

/// The reader position, in two alternating slots: a torn write of one slot
/// leaves the other (older, so claiming less) intact.
///
/// ```text
/// format 2 slot (4 KiB) = "SGL2" counter:u64 watermark:u64 high:u64
///                         holes:u16 hole:u64 * holes  crc32(all before):u32
/// format 1 slot (32 B)  = "SGL1" counter:u64 watermark:u64 crc32:u32 pad
/// ```
/// Integers little-endian. Format 1 files (earlier builds) are read (as a
/// watermark with no holes) and replaced by format 2 on the next write; the
/// counter carries over, so the newest slot wins whatever its format.
#[derive(Debug)]
pub struct Ledger {
    file: File,
    counter: u64,
    dirty: bool,
}

impl Ledger {
    /// Open (or create) the ledger; returns it, the finished position, and
    /// whether an existing ledger was unreadable (then nothing is finished).
    /// The file is fsync'ed first: what recovery deletes on its word must be
    /// finished durably.
    pub fn open(path: &Path) -> io::Result<(Self, Position, bool)> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        file.sync_all()?;
        let size = file.metadata()?.len();
        let mut best: Option<(u64, Position)> = None;
        let mut consider = |v: Option<(u64, Position)>| {
            if let Some(v) = v
                && best.as_ref().is_none_or(|b| v.0 > b.0)
            {
                best = Some(v);
            }
        };
        for slot in 0..2 {
            let mut buf = vec![0u8; SLOT as usize];
            // A short read leaves zeros, which no slot parses as.
            let n = read_at_most(&file, &mut buf, slot * SLOT)?;
            consider(parse_slot(&buf[..n]));
            let mut old = [0u8; SLOT_V1 as usize];
            if file.read_exact_at(&mut old, slot * SLOT_V1).is_ok() {
                consider(parse_slot_v1(&old));
            }
        }
        let reset = size > 0 && best.is_none();
        let (counter, position) = best.unwrap_or_default();
        Ok((
            Self {
                file,
                counter,
                dirty: false,
            },
            position,
            reset,
        ))
    }

    /// Record a new position (in the older slot; not fsync'ed).
    pub fn write(&mut self, position: &Position) -> io::Result<()> {
        self.counter += 1;
        let buf = encode_slot(self.counter, position);
        self.file.write_all_at(&buf, (self.counter % 2) * SLOT)?;
        self.dirty = true;
        Ok(())
    }

    /// fsync when something was written since the last sync.
    pub fn sync(&mut self) -> io::Result<()> {
        if self.dirty {
            self.file.sync_data()?;
            self.dirty = false;
        }
        Ok(())
    }
}

fn read_at_most(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], offset + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn encode_slot(counter: u64, position: &Position) -> Vec<u8> {
    let (high, holes) = position.bounded();
    let mut buf = Vec::with_capacity(SLOT_HEAD + holes.len() * 8 + 4);
    buf.extend_from_slice(LEDGER_MAGIC);
    buf.extend_from_slice(&counter.to_le_bytes());
    buf.extend_from_slice(&position.watermark.to_le_bytes());
    buf.extend_from_slice(&high.to_le_bytes());
    // bounded() keeps at most MAX_HOLES, which fits a u16.
    buf.extend_from_slice(&(holes.len() as u16).to_le_bytes());
    for h in holes {
        buf.extend_from_slice(&h.to_le_bytes());
    }
    let crc = crc32fast::hash(&buf);
    buf.extend_from_slice(&crc.to_le_bytes());
    buf
}

fn u64_at(buf: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(buf.get(at..at + 8)?.try_into().ok()?))
}

/// A format 2 slot: counter and position.
fn parse_slot(buf: &[u8]) -> Option<(u64, Position)> {
    if buf.get(..4)? != LEDGER_MAGIC {
        return None;
    }
    let n = usize::from(u16::from_le_bytes(buf.get(28..30)?.try_into().ok()?));
    if n > MAX_HOLES {
        return None;
    }
    let end = SLOT_HEAD + n * 8;
    let crc = u32::from_le_bytes(buf.get(end..end + 4)?.try_into().ok()?);
    if crc32fast::hash(&buf[..end]) != crc {
        return None;
    }
    let counter = u64_at(buf, 4)?;
    let watermark = u64_at(buf, 12)?;
    let high = u64_at(buf, 20)?;
    let holes: Vec<u64> = (0..n)
        .map(|i| u64_at(buf, SLOT_HEAD + i * 8))
        .collect::<Option<_>>()?;
    // Holes strictly ascending within (watermark, high): anything else was
    // not written by us; refuse it like a bad checksum.
    let ordered =
        holes.windows(2).all(|w| w[0] < w[1]) && holes.iter().all(|h| *h > watermark && *h <= high);
    ordered.then_some((
        counter,
        Position {
            watermark,
            high,
            holes,
        },
    ))
}

/// A format 1 slot: counter and watermark.
fn parse_slot_v1(buf: &[u8; SLOT_V1 as usize]) -> Option<(u64, Position)> {
    if &buf[..4] != LEDGER_MAGIC_V1 {
        return None;
    }
    let crc = u32::from_le_bytes(buf[20..24].try_into().ok()?);
    if crc32fast::hash(&buf[..20]) != crc {
        return None;
    }
    let counter = u64_at(buf, 4)?;
    let watermark = u64_at(buf, 12)?;
    Some((counter, Position::upto(watermark)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::record::encode;

    fn item(n: usize) -> Spooled {
        Spooled {
            body: bytes::Bytes::from(vec![7u8; n]),
            encoding: crate::otlp::Encoding::Protobuf,
            gzip: false,
            signal: Some(crate::otlp::Signal::Logs),
            user_agent: None,
            credential: "c".into(),
            request_id: format!("r{n}"),
            endpoint: "traces".into(),
            provider: None,
            subject: None,
            spans: 1,
            enqueued_ms: 1,
        }
    }

    #[test]
    fn a_torn_tail_is_cut_at_the_last_good_record() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = Appender::create(dir.path(), 1).unwrap();
        for (seq, n) in [(1u64, 10usize), (2, 20), (3, 30)] {
            let mut f = encode(0, &item(n));
            stamp_seq(&mut f, seq);
            a.write(&f).unwrap();
        }
        let good = a.len;
        // Half of a fourth record, as a kill -9 mid-write leaves it.
        let mut f = encode(0, &item(40));
        stamp_seq(&mut f, 4);
        a.write(&f[..f.len() / 2]).unwrap();
        a.sync().unwrap();
        drop(a);
        let r = recover(dir.path(), &Position::upto(1)).unwrap();
        let seqs: Vec<u64> = r.records.iter().map(|(s, _, _)| *s).collect();
        assert_eq!(seqs, vec![2, 3], "seq 1 is below the watermark");
        assert_eq!(r.discarded.len(), 1);
        assert_eq!(r.discarded[0].offset, good);
        assert_eq!(r.discarded[0].bytes, (f.len() / 2) as u64);
        assert_eq!(r.next_seq, 4);
        assert_eq!(r.next_segment, 2);
        let back = read(dir.path(), r.records[1].1).unwrap();
        assert_eq!(back.body.len(), 30);
        // The cut is permanent: a second recovery finds nothing to discard.
        let r = recover(dir.path(), &Position::upto(1)).unwrap();
        assert!(r.discarded.is_empty());
    }

    #[test]
    fn finished_segments_are_deleted_and_a_corrupt_byte_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = Appender::create(dir.path(), 1).unwrap();
        let mut f = encode(0, &item(5));
        stamp_seq(&mut f, 1);
        a.write(&f).unwrap();
        let mut b = Appender::create(dir.path(), 2).unwrap();
        let mut g = encode(0, &item(6));
        stamp_seq(&mut g, 2);
        b.write(&g).unwrap();
        drop((a, b));
        // Flip a body byte of seq 2.
        let p = dir.path().join(segment_name(2));
        let mut data = fs::read(&p).unwrap();
        let last = data.len() - 1;
        data[last] ^= 0xff;
        fs::write(&p, &data).unwrap();
        let r = recover(dir.path(), &Position::upto(1)).unwrap();
        assert!(r.records.is_empty());
        assert_eq!(r.discarded.len(), 1);
        assert!(r.discarded[0].reason.contains("checksum"));
        assert_eq!(list_segments(dir.path()).unwrap(), Vec::<u64>::new());
    }

    #[test]
    fn the_ledger_keeps_the_newest_valid_slot() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ledger");
        let (mut l, w, reset) = Ledger::open(&p).unwrap();
        assert_eq!((w, reset), (Position::default(), false));
        l.write(&Position::upto(5)).unwrap();
        let nine = Position {
            watermark: 9,
            high: 14,
            holes: vec![10, 12],
        };
        l.write(&nine).unwrap();
        l.sync().unwrap();
        drop(l);
        assert_eq!(Ledger::open(&p).unwrap().1, nine);
        // Corrupt the newest slot (counter 2 lives in slot 0): the older one wins.
        let mut data = fs::read(&p).unwrap();
        data[13] ^= 1;
        fs::write(&p, &data).unwrap();
        assert_eq!(Ledger::open(&p).unwrap().1, Position::upto(5));
        fs::write(&p, vec![0xAB; 64]).unwrap();
        let (_, w, reset) = Ledger::open(&p).unwrap();
        assert_eq!((w, reset), (Position::default(), true));
    }

    #[test]
    fn a_position_says_which_sequences_are_finished() {
        let p = Position {
            watermark: 3,
            high: 8,
            holes: vec![5, 6],
        };
        let finished: Vec<u64> = (1..=10).filter(|s| p.is_finished(*s)).collect();
        assert_eq!(finished, vec![1, 2, 3, 4, 7, 8]);
        // Past MAX_HOLES holes, `high` drops below the first one left out:
        // fewer claims (re-delivery), never a skipped batch.
        let many = Position {
            watermark: 0,
            high: 10_000,
            holes: (1..=(MAX_HOLES as u64 + 10)).map(|h| h * 2).collect(),
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger");
        let (mut l, _, _) = Ledger::open(&path).unwrap();
        l.write(&many).unwrap();
        drop(l);
        let back = Ledger::open(&path).unwrap().1;
        assert_eq!(back.holes.len(), MAX_HOLES);
        assert_eq!(back.high, (MAX_HOLES as u64 + 1) * 2 - 1);
        for seq in 1..=10_000 {
            if back.is_finished(seq) {
                assert!(many.is_finished(seq), "{seq} claimed finished");
            }
        }
    }

    /// A format 1 slot as earlier builds wrote it.
    fn v1_slot(counter: u64, watermark: u64) -> [u8; 32] {
        let mut buf = [0u8; 32];
        buf[..4].copy_from_slice(b"SGL1");
        buf[4..12].copy_from_slice(&counter.to_le_bytes());
        buf[12..20].copy_from_slice(&watermark.to_le_bytes());
        let crc = crc32fast::hash(&buf[..20]);
        buf[20..24].copy_from_slice(&crc.to_le_bytes());
        buf
    }

    #[test]
    fn a_format_1_ledger_is_read_and_then_superseded() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ledger");
        // Counter 7 in slot 1, counter 6 (older) in slot 0.
        let mut old = v1_slot(6, 40).to_vec();
        old.extend_from_slice(&v1_slot(7, 42));
        fs::write(&p, &old).unwrap();
        let (mut l, pos, reset) = Ledger::open(&p).unwrap();
        assert_eq!((pos, reset), (Position::upto(42), false));
        // The next write (counter 8, slot 0) overwrites both old slots'
        // start; the one after lands in slot 1 of format 2.
        let next = Position {
            watermark: 42,
            high: 50,
            holes: vec![44],
        };
        l.write(&next).unwrap();
        drop(l);
        let (mut l, pos, _) = Ledger::open(&p).unwrap();
        assert_eq!(pos, next);
        l.write(&Position::upto(60)).unwrap();
        drop(l);
        assert_eq!(Ledger::open(&p).unwrap().1, Position::upto(60));
        // Recovery skips what a format 1 watermark covers.
        let mut a = Appender::create(dir.path(), 1).unwrap();
        for seq in 41..=44 {
            let mut f = encode(0, &item(seq as usize));
            stamp_seq(&mut f, seq);
            a.write(&f).unwrap();
        }
        drop(a);
        let r = recover(dir.path(), &Position::upto(42)).unwrap();
        let seqs: Vec<u64> = r.records.iter().map(|(s, _, _)| *s).collect();
        assert_eq!(seqs, vec![43, 44]);
    }

    #[test]
    fn recovery_skips_batches_finished_out_of_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = Appender::create(dir.path(), 1).unwrap();
        for seq in 1..=6u64 {
            let mut f = encode(0, &item(seq as usize));
            stamp_seq(&mut f, seq);
            a.write(&f).unwrap();
        }
        drop(a);
        let pos = Position {
            watermark: 1,
            high: 5,
            holes: vec![2, 4],
        };
        let r = recover(dir.path(), &pos).unwrap();
        let seqs: Vec<u64> = r.records.iter().map(|(s, _, _)| *s).collect();
        assert_eq!(seqs, vec![2, 4, 6]);
        assert_eq!(r.next_seq, 7);
    }
}
