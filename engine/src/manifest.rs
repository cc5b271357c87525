//! The manifest: an append-only log of version edits (spec: `docs/format/manifest.md`).
//!
//! Each edit (tables added and removed, keyspaces created and dropped, flushed
//! sequence numbers, counters) is appended as one framed payload (the WAL's fragment
//! framing, `strata_wal::record`) and fsynced before the change it describes takes
//! effect. A second fsync of a *sync mark* follows whenever the engine is about to
//! delete something because of an edit (WAL segments, compaction inputs), so recovery
//! can tell a torn last edit (cut, never acted on) from a damaged durable one
//! (corruption).
//!
//! At every open, and when the log grows past `Options::manifest_rollover_bytes`, the
//! whole state is written as one snapshot edit to a new `MANIFEST-{n:06}`, fsynced, and
//! installed by writing `CURRENT.tmp`, fsyncing it, renaming it over `CURRENT` and
//! fsyncing the directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use strata_wal::codec::{put_bytes, put_varint, Reader};
use strata_wal::record::{
    encode_payload, encode_sync_mark, max_declared_synced, PayloadItem, PayloadReader, Salt,
};
use strata_wal::{Fs, FsFile, SeqNo};

use crate::error::{Error, Result};
use crate::history::{TimeMark, TimeMarks};
use crate::ids::{KeyspaceId, Level, TableId};

/// First eight bytes of a manifest file.
pub const MANIFEST_MAGIC: [u8; 8] = *b"STRATAMF";
/// Manifest format version. Version 2 added the checksum salt.
pub const MANIFEST_FORMAT_VERSION: u32 = 2;
/// Bytes of the manifest header: magic, version, manifest number, checksum salt (mixed
/// into every fragment's CRC, see `strata_wal::record::Salt`), CRC32 of the bytes
/// before it.
pub const MANIFEST_HEADER_LEN: usize = 8 + 4 + 8 + 4 + 4;
/// Name of the file naming the live manifest.
pub const CURRENT: &str = "CURRENT";

/// What the manifest knows about one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableMeta {
    /// The table's id (file `{id:06}.sst`).
    pub id: TableId,
    /// Its level.
    pub level: Level,
    /// File size in bytes.
    pub size: u64,
    /// Smallest internal key.
    pub smallest: Vec<u8>,
    /// Largest internal key.
    pub largest: Vec<u8>,
    /// Smallest sequence number in the table.
    pub min_seq: SeqNo,
    /// Largest sequence number in the table.
    pub max_seq: SeqNo,
    /// Entries (versions) in the table.
    pub entries: u64,
    /// Point tombstones among them.
    pub deletions: u64,
    /// The sorted run of its level the table belongs to. Runs of a level are read
    /// newest first, and a newer run has a larger id (ids come from the file-number
    /// counter). A level-0 table is a run of its own, with its table id.
    pub run: u64,
    /// The value-log records the table's pointers name, per segment (ascending ids).
    /// A segment's bytes no table names are its garbage.
    pub value_refs: Vec<ValueRef>,
}

/// The value-log records one table points at in one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValueRef {
    /// The segment id.
    pub segment: u64,
    /// Bytes of the records named (whole records: header, key and stored value).
    pub bytes: u64,
    /// Number of records named.
    pub records: u64,
}

/// A value-log segment as the manifest records it. Segments are written whole (by a
/// flush, compaction or garbage collection) and never appended to once recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentMeta {
    /// The segment id (file `{id:06}.vlog`, from the file-number counter).
    pub id: u64,
    /// Length of the file, header included; all of it was fsynced before this record.
    pub file_bytes: u64,
    /// Bytes of its records (the file without its header).
    pub record_bytes: u64,
    /// Number of records.
    pub records: u64,
}

/// A keyspace as recorded in the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyspaceRecord {
    /// Its id.
    pub id: KeyspaceId,
    /// Its name.
    pub name: String,
    /// Its options, encoded by `KeyspaceOptions::encode`.
    pub options: Vec<u8>,
}

/// One change to the database's persistent state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VersionEdit {
    /// New value of the file-number counter.
    pub next_file_number: Option<u64>,
    /// New value of the keyspace-id counter.
    pub next_keyspace_id: Option<u32>,
    /// A sequence number at or above every one written to a table so far.
    pub last_seq: Option<SeqNo>,
    /// Keyspaces created.
    pub created_keyspaces: Vec<KeyspaceRecord>,
    /// Keyspaces dropped.
    pub dropped_keyspaces: Vec<KeyspaceId>,
    /// Tables added.
    pub added_tables: Vec<(KeyspaceId, TableMeta)>,
    /// Tables removed.
    pub removed_tables: Vec<(KeyspaceId, Level, TableId)>,
    /// Per keyspace: every write with a sequence number at or below this is in tables.
    pub flushed_seqs: Vec<(KeyspaceId, SeqNo)>,
    /// Prefix tombstones that moved from a flushed memtable into the manifest.
    pub added_prefix_tombstones: Vec<(KeyspaceId, Vec<u8>, SeqNo)>,
    /// Prefix tombstones no longer needed.
    pub removed_prefix_tombstones: Vec<(KeyspaceId, Vec<u8>, SeqNo)>,
    /// Value-log segments added.
    pub added_segments: Vec<(KeyspaceId, SegmentMeta)>,
    /// Value-log segments removed (no table points into them any more).
    pub removed_segments: Vec<(KeyspaceId, u64)>,
    /// Per keyspace: the history floor a flush or compaction relied on (reads at
    /// sequence numbers below it are no longer exact).
    pub history_floors: Vec<(KeyspaceId, SeqNo)>,
    /// Changes to the time marks.
    pub time_marks: Option<TimeMarkEdit>,
}

/// A change to the time marks: keep the marks with `keep_from <= seq <= keep_to`,
/// then append `added` (each after the newest kept mark).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeMarkEdit {
    /// Marks below this sequence number are forgotten.
    pub keep_from: SeqNo,
    /// Marks above this sequence number are forgotten (a recovery that found the
    /// log shorter than the marks).
    pub keep_to: SeqNo,
    /// New marks, ascending.
    pub added: Vec<TimeMark>,
}

/// Field tags of an encoded edit. Stored on disk: only ever added.
mod tag {
    pub const NEXT_FILE_NUMBER: u64 = 1;
    pub const NEXT_KEYSPACE_ID: u64 = 2;
    pub const LAST_SEQ: u64 = 3;
    pub const CREATE_KEYSPACE: u64 = 4;
    pub const DROP_KEYSPACE: u64 = 5;
    pub const ADD_TABLE: u64 = 6;
    pub const REMOVE_TABLE: u64 = 7;
    pub const FLUSHED_SEQ: u64 = 8;
    pub const ADD_PREFIX_TOMBSTONE: u64 = 9;
    pub const REMOVE_PREFIX_TOMBSTONE: u64 = 10;
    /// `ADD_TABLE` followed by the table's run id.
    pub const ADD_TABLE_IN_RUN: u64 = 11;
    /// `ADD_TABLE_IN_RUN` followed by the table's value-log references.
    pub const ADD_TABLE_WITH_VALUE_REFS: u64 = 12;
    pub const ADD_VALUE_SEGMENT: u64 = 13;
    pub const REMOVE_VALUE_SEGMENT: u64 = 14;
    pub const HISTORY_FLOOR: u64 = 15;
    pub const TIME_MARKS: u64 = 16;
}

impl VersionEdit {
    /// Encodes the edit: a sequence of `tag: varint, body: length-prefixed bytes`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut field = |tag: u64, body: Vec<u8>| {
            put_varint(&mut out, tag);
            put_bytes(&mut out, &body);
        };
        let varint = |v: u64| {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            b
        };
        if let Some(n) = self.next_file_number {
            field(tag::NEXT_FILE_NUMBER, varint(n));
        }
        if let Some(n) = self.next_keyspace_id {
            field(tag::NEXT_KEYSPACE_ID, varint(u64::from(n)));
        }
        if let Some(s) = self.last_seq {
            field(tag::LAST_SEQ, varint(s.0));
        }
        for k in &self.created_keyspaces {
            let mut b = Vec::new();
            put_varint(&mut b, u64::from(k.id.0));
            put_bytes(&mut b, k.name.as_bytes());
            put_bytes(&mut b, &k.options);
            field(tag::CREATE_KEYSPACE, b);
        }
        for id in &self.dropped_keyspaces {
            field(tag::DROP_KEYSPACE, varint(u64::from(id.0)));
        }
        for (ks, seg) in &self.added_segments {
            let mut b = Vec::new();
            put_varint(&mut b, u64::from(ks.0));
            put_varint(&mut b, seg.id);
            put_varint(&mut b, seg.file_bytes);
            put_varint(&mut b, seg.record_bytes);
            put_varint(&mut b, seg.records);
            field(tag::ADD_VALUE_SEGMENT, b);
        }
        for (ks, t) in &self.added_tables {
            let mut b = Vec::new();
            put_varint(&mut b, u64::from(ks.0));
            put_varint(&mut b, u64::from(t.level.0));
            put_varint(&mut b, t.id.0);
            put_varint(&mut b, t.size);
            put_bytes(&mut b, &t.smallest);
            put_bytes(&mut b, &t.largest);
            put_varint(&mut b, t.min_seq.0);
            put_varint(&mut b, t.max_seq.0);
            put_varint(&mut b, t.entries);
            put_varint(&mut b, t.deletions);
            put_varint(&mut b, t.run);
            if t.value_refs.is_empty() {
                field(tag::ADD_TABLE_IN_RUN, b);
            } else {
                put_varint(&mut b, t.value_refs.len() as u64);
                for r in &t.value_refs {
                    put_varint(&mut b, r.segment);
                    put_varint(&mut b, r.bytes);
                    put_varint(&mut b, r.records);
                }
                field(tag::ADD_TABLE_WITH_VALUE_REFS, b);
            }
        }
        for (ks, id) in &self.removed_segments {
            let mut b = Vec::new();
            put_varint(&mut b, u64::from(ks.0));
            put_varint(&mut b, *id);
            field(tag::REMOVE_VALUE_SEGMENT, b);
        }
        for (ks, level, id) in &self.removed_tables {
            let mut b = Vec::new();
            put_varint(&mut b, u64::from(ks.0));
            put_varint(&mut b, u64::from(level.0));
            put_varint(&mut b, id.0);
            field(tag::REMOVE_TABLE, b);
        }
        for (ks, seq) in &self.flushed_seqs {
            let mut b = Vec::new();
            put_varint(&mut b, u64::from(ks.0));
            put_varint(&mut b, seq.0);
            field(tag::FLUSHED_SEQ, b);
        }
        for (t, list) in [
            (tag::ADD_PREFIX_TOMBSTONE, &self.added_prefix_tombstones),
            (
                tag::REMOVE_PREFIX_TOMBSTONE,
                &self.removed_prefix_tombstones,
            ),
        ] {
            for (ks, prefix, seq) in list {
                let mut b = Vec::new();
                put_varint(&mut b, u64::from(ks.0));
                put_bytes(&mut b, prefix);
                put_varint(&mut b, seq.0);
                field(t, b);
            }
        }
        for (ks, seq) in &self.history_floors {
            let mut b = Vec::new();
            put_varint(&mut b, u64::from(ks.0));
            put_varint(&mut b, seq.0);
            field(tag::HISTORY_FLOOR, b);
        }
        if let Some(m) = &self.time_marks {
            let mut b = Vec::new();
            put_varint(&mut b, m.keep_from.0);
            put_varint(&mut b, m.keep_to.0);
            put_varint(&mut b, m.added.len() as u64);
            // Deltas from the previous mark: a few bytes each.
            let (mut seq, mut millis) = (0u64, 0u64);
            for mark in &m.added {
                put_varint(&mut b, mark.seq.0.wrapping_sub(seq));
                put_varint(&mut b, mark.unix_millis.wrapping_sub(millis));
                (seq, millis) = (mark.seq.0, mark.unix_millis);
            }
            field(tag::TIME_MARKS, b);
        }
        out
    }

    /// Decodes an edit; the error string says what is wrong.
    ///
    /// # Errors
    /// A description of the first malformed field.
    pub fn decode(bytes: &[u8]) -> std::result::Result<VersionEdit, String> {
        let mut edit = VersionEdit::default();
        let mut r = Reader::new(bytes);
        while !r.is_empty() {
            let tag = r.varint().ok_or("bad field tag")?;
            let body = r.length_prefixed().ok_or("field length beyond the edit")?;
            let mut b = Reader::new(body);
            let bad = || format!("malformed field with tag {tag}");
            match tag {
                tag::NEXT_FILE_NUMBER => edit.next_file_number = Some(b.varint().ok_or_else(bad)?),
                tag::NEXT_KEYSPACE_ID => {
                    edit.next_keyspace_id = Some(b.varint_u32().ok_or_else(bad)?)
                }
                tag::LAST_SEQ => edit.last_seq = Some(SeqNo(b.varint().ok_or_else(bad)?)),
                tag::CREATE_KEYSPACE => {
                    let id = KeyspaceId(b.varint_u32().ok_or_else(bad)?);
                    let name = std::str::from_utf8(b.length_prefixed().ok_or_else(bad)?)
                        .map_err(|_| "keyspace name is not UTF-8")?
                        .to_string();
                    let options = b.length_prefixed().ok_or_else(bad)?.to_vec();
                    edit.created_keyspaces
                        .push(KeyspaceRecord { id, name, options });
                }
                tag::DROP_KEYSPACE => edit
                    .dropped_keyspaces
                    .push(KeyspaceId(b.varint_u32().ok_or_else(bad)?)),
                tag::ADD_TABLE | tag::ADD_TABLE_IN_RUN | tag::ADD_TABLE_WITH_VALUE_REFS => {
                    let ks = KeyspaceId(b.varint_u32().ok_or_else(bad)?);
                    let level =
                        Level(u8::try_from(b.varint().ok_or_else(bad)?).map_err(|_| bad())?);
                    let mut meta = TableMeta {
                        id: TableId(b.varint().ok_or_else(bad)?),
                        level,
                        size: b.varint().ok_or_else(bad)?,
                        smallest: b.length_prefixed().ok_or_else(bad)?.to_vec(),
                        largest: b.length_prefixed().ok_or_else(bad)?.to_vec(),
                        min_seq: SeqNo(b.varint().ok_or_else(bad)?),
                        max_seq: SeqNo(b.varint().ok_or_else(bad)?),
                        entries: b.varint().ok_or_else(bad)?,
                        deletions: b.varint().ok_or_else(bad)?,
                        run: 0,
                        value_refs: Vec::new(),
                    };
                    meta.run = if tag != tag::ADD_TABLE {
                        b.varint().ok_or_else(bad)?
                    } else if level.0 == 0 {
                        // Written before runs were recorded: level 0 held one run per
                        // table, every deeper level one run.
                        meta.id.0
                    } else {
                        0
                    };
                    if tag == tag::ADD_TABLE_WITH_VALUE_REFS {
                        let n = b.varint().ok_or_else(bad)?;
                        // Each reference takes at least three bytes: no count can
                        // promise more than the field holds.
                        if n > body.len() as u64 / 3 {
                            return Err(bad());
                        }
                        for _ in 0..n {
                            let r = ValueRef {
                                segment: b.varint().ok_or_else(bad)?,
                                bytes: b.varint().ok_or_else(bad)?,
                                records: b.varint().ok_or_else(bad)?,
                            };
                            if meta
                                .value_refs
                                .last()
                                .is_some_and(|l| l.segment >= r.segment)
                            {
                                return Err(format!(
                                    "value-log references of table {} are not in ascending order",
                                    meta.id
                                ));
                            }
                            meta.value_refs.push(r);
                        }
                    }
                    edit.added_tables.push((ks, meta));
                }
                tag::REMOVE_TABLE => {
                    let ks = KeyspaceId(b.varint_u32().ok_or_else(bad)?);
                    let level =
                        Level(u8::try_from(b.varint().ok_or_else(bad)?).map_err(|_| bad())?);
                    let id = TableId(b.varint().ok_or_else(bad)?);
                    edit.removed_tables.push((ks, level, id));
                }
                tag::FLUSHED_SEQ => {
                    let ks = KeyspaceId(b.varint_u32().ok_or_else(bad)?);
                    edit.flushed_seqs
                        .push((ks, SeqNo(b.varint().ok_or_else(bad)?)));
                }
                tag::ADD_PREFIX_TOMBSTONE | tag::REMOVE_PREFIX_TOMBSTONE => {
                    let ks = KeyspaceId(b.varint_u32().ok_or_else(bad)?);
                    let prefix = b.length_prefixed().ok_or_else(bad)?.to_vec();
                    let seq = SeqNo(b.varint().ok_or_else(bad)?);
                    if tag == tag::ADD_PREFIX_TOMBSTONE {
                        edit.added_prefix_tombstones.push((ks, prefix, seq));
                    } else {
                        edit.removed_prefix_tombstones.push((ks, prefix, seq));
                    }
                }
                tag::ADD_VALUE_SEGMENT => {
                    let ks = KeyspaceId(b.varint_u32().ok_or_else(bad)?);
                    let seg = SegmentMeta {
                        id: b.varint().ok_or_else(bad)?,
                        file_bytes: b.varint().ok_or_else(bad)?,
                        record_bytes: b.varint().ok_or_else(bad)?,
                        records: b.varint().ok_or_else(bad)?,
                    };
                    edit.added_segments.push((ks, seg));
                }
                tag::REMOVE_VALUE_SEGMENT => {
                    let ks = KeyspaceId(b.varint_u32().ok_or_else(bad)?);
                    edit.removed_segments
                        .push((ks, b.varint().ok_or_else(bad)?));
                }
                tag::HISTORY_FLOOR => {
                    let ks = KeyspaceId(b.varint_u32().ok_or_else(bad)?);
                    edit.history_floors
                        .push((ks, SeqNo(b.varint().ok_or_else(bad)?)));
                }
                tag::TIME_MARKS => {
                    let keep_from = SeqNo(b.varint().ok_or_else(bad)?);
                    let keep_to = SeqNo(b.varint().ok_or_else(bad)?);
                    let count = b.varint().ok_or_else(bad)?;
                    // Each mark takes at least two bytes: no allocation past the input.
                    if count > b.remaining() as u64 / 2 {
                        return Err(bad());
                    }
                    let mut added = Vec::with_capacity(count as usize);
                    let (mut seq, mut millis) = (0u64, 0u64);
                    for _ in 0..count {
                        seq = seq.wrapping_add(b.varint().ok_or_else(bad)?);
                        millis = millis.wrapping_add(b.varint().ok_or_else(bad)?);
                        added.push(TimeMark {
                            seq: SeqNo(seq),
                            unix_millis: millis,
                        });
                    }
                    edit.time_marks = Some(TimeMarkEdit {
                        keep_from,
                        keep_to,
                        added,
                    });
                }
                other => {
                    return Err(format!(
                        "unknown field tag {other}: written by a newer version of Strata?"
                    ))
                }
            }
            if !b.is_empty() {
                return Err(format!("trailing bytes in field with tag {tag}"));
            }
        }
        Ok(edit)
    }
}

/// The state a manifest describes, built by applying edits in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ManifestState {
    /// Next unused file number.
    pub next_file_number: u64,
    /// Next unused keyspace id.
    pub next_keyspace_id: u32,
    /// At or above every sequence number in a table.
    pub last_seq: SeqNo,
    /// Live keyspaces.
    pub keyspaces: BTreeMap<KeyspaceId, KeyspaceState>,
    /// When sequence numbers were visible (see `crate::history`).
    pub time_marks: TimeMarks,
}

/// One keyspace's persistent state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyspaceState {
    /// Name and options.
    pub record: Option<KeyspaceRecord>,
    /// Tables by id.
    pub tables: BTreeMap<TableId, TableMeta>,
    /// Every write at or below this is in tables.
    pub flushed_seq: SeqNo,
    /// Prefix tombstones held by the manifest.
    pub prefix_tombstones: Vec<(Vec<u8>, SeqNo)>,
    /// Value-log segments by id.
    pub segments: BTreeMap<u64, SegmentMeta>,
    /// Reads below this sequence number are no longer exact (`crate::history`).
    pub history_floor: SeqNo,
}

impl ManifestState {
    /// Applies one edit.
    ///
    /// # Errors
    /// A description when the edit does not fit the state (unknown keyspace, a table
    /// removed that is not there): the manifest is inconsistent.
    pub fn apply(&mut self, edit: &VersionEdit) -> std::result::Result<(), String> {
        if let Some(n) = edit.next_file_number {
            self.next_file_number = self.next_file_number.max(n);
        }
        if let Some(n) = edit.next_keyspace_id {
            self.next_keyspace_id = self.next_keyspace_id.max(n);
        }
        if let Some(s) = edit.last_seq {
            self.last_seq = self.last_seq.max(s);
        }
        for k in &edit.created_keyspaces {
            if self.keyspaces.contains_key(&k.id) {
                return Err(format!("keyspace {} created twice", k.id));
            }
            self.keyspaces.insert(
                k.id,
                KeyspaceState {
                    record: Some(k.clone()),
                    ..KeyspaceState::default()
                },
            );
            self.next_keyspace_id = self.next_keyspace_id.max(k.id.0.saturating_add(1));
        }
        for id in &edit.dropped_keyspaces {
            self.keyspaces
                .remove(id)
                .ok_or_else(|| format!("dropped keyspace {id} does not exist"))?;
        }
        for (ks, seg) in &edit.added_segments {
            self.next_file_number = self.next_file_number.max(seg.id.saturating_add(1));
            let state = self.keyspace_mut(*ks)?;
            if state.segments.insert(seg.id, *seg).is_some() {
                return Err(format!("value-log segment {} added twice", seg.id));
            }
        }
        for (ks, level, id) in &edit.removed_tables {
            let state = self.keyspace_mut(*ks)?;
            match state.tables.remove(id) {
                Some(t) if t.level == *level => {}
                _ => {
                    return Err(format!(
                        "removed table {id} is not at {level} of keyspace {ks}"
                    ))
                }
            }
        }
        for (ks, meta) in &edit.added_tables {
            self.next_file_number = self.next_file_number.max(meta.id.0.saturating_add(1));
            let state = self.keyspace_mut(*ks)?;
            if let Some(r) = meta
                .value_refs
                .iter()
                .find(|r| !state.segments.contains_key(&r.segment))
            {
                return Err(format!(
                    "table {} points into value-log segment {}, which does not exist",
                    meta.id, r.segment
                ));
            }
            if state.tables.insert(meta.id, meta.clone()).is_some() {
                return Err(format!("table {} added twice", meta.id));
            }
        }
        for (ks, id) in &edit.removed_segments {
            let state = self.keyspace_mut(*ks)?;
            if state.segments.remove(id).is_none() {
                return Err(format!("removed value-log segment {id} does not exist"));
            }
            if let Some(t) = state
                .tables
                .values()
                .find(|t| t.value_refs.iter().any(|r| r.segment == *id))
            {
                return Err(format!(
                    "value-log segment {id} is removed while table {} still points into it",
                    t.id
                ));
            }
        }
        for (ks, seq) in &edit.flushed_seqs {
            let state = self.keyspace_mut(*ks)?;
            state.flushed_seq = state.flushed_seq.max(*seq);
        }
        for (ks, prefix, seq) in &edit.added_prefix_tombstones {
            self.keyspace_mut(*ks)?
                .prefix_tombstones
                .push((prefix.clone(), *seq));
        }
        for (ks, prefix, seq) in &edit.removed_prefix_tombstones {
            let list = &mut self.keyspace_mut(*ks)?.prefix_tombstones;
            let before = list.len();
            list.retain(|(p, s)| !(p == prefix && s == seq));
            if list.len() == before {
                return Err(format!("removed prefix tombstone at {seq} does not exist"));
            }
        }
        for (ks, seq) in &edit.history_floors {
            let state = self.keyspace_mut(*ks)?;
            state.history_floor = state.history_floor.max(*seq);
        }
        if let Some(m) = &edit.time_marks {
            self.time_marks.retain_range(m.keep_from, m.keep_to);
            for mark in &m.added {
                if !self.time_marks.push(*mark) {
                    return Err(format!(
                        "time mark ({}, {} ms) does not follow the newest one",
                        mark.seq, mark.unix_millis
                    ));
                }
            }
        }
        Ok(())
    }

    fn keyspace_mut(&mut self, id: KeyspaceId) -> std::result::Result<&mut KeyspaceState, String> {
        self.keyspaces
            .get_mut(&id)
            .ok_or_else(|| format!("edit names keyspace {id}, which does not exist"))
    }

    /// One edit that recreates this whole state from nothing.
    pub fn snapshot_edit(&self) -> VersionEdit {
        let mut edit = VersionEdit {
            next_file_number: Some(self.next_file_number),
            next_keyspace_id: Some(self.next_keyspace_id),
            last_seq: Some(self.last_seq),
            time_marks: (!self.time_marks.is_empty()).then(|| TimeMarkEdit {
                keep_from: SeqNo(0),
                keep_to: SeqNo::MAX,
                added: self.time_marks.as_slice().to_vec(),
            }),
            ..VersionEdit::default()
        };
        for (id, ks) in &self.keyspaces {
            if let Some(record) = &ks.record {
                edit.created_keyspaces.push(record.clone());
            }
            edit.added_segments
                .extend(ks.segments.values().map(|s| (*id, *s)));
            edit.added_tables
                .extend(ks.tables.values().map(|t| (*id, t.clone())));
            edit.flushed_seqs.push((*id, ks.flushed_seq));
            if ks.history_floor > SeqNo(0) {
                edit.history_floors.push((*id, ks.history_floor));
            }
            edit.added_prefix_tombstones.extend(
                ks.prefix_tombstones
                    .iter()
                    .map(|(p, s)| (*id, p.clone(), *s)),
            );
        }
        edit
    }
}

/// The file name of manifest number `n`.
pub fn manifest_file_name(n: u64) -> String {
    format!("MANIFEST-{n:06}")
}

fn encode_header(number: u64, salt: Salt) -> [u8; MANIFEST_HEADER_LEN] {
    let mut h = [0u8; MANIFEST_HEADER_LEN];
    h[..8].copy_from_slice(&MANIFEST_MAGIC);
    h[8..12].copy_from_slice(&MANIFEST_FORMAT_VERSION.to_le_bytes());
    h[12..20].copy_from_slice(&number.to_le_bytes());
    h[20..24].copy_from_slice(&salt.0.to_le_bytes());
    let crc = crc32fast::hash(&h[..24]);
    h[24..28].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Encodes the contents of `CURRENT` naming manifest `number`.
pub fn encode_current(number: u64) -> Vec<u8> {
    let name = manifest_file_name(number);
    format!("{name} crc32={:08x}\n", crc32fast::hash(name.as_bytes())).into_bytes()
}

/// Decodes `CURRENT`; the manifest number it names.
///
/// # Errors
/// [`Error::Corruption`] if it is not exactly what [`encode_current`] writes.
pub fn decode_current(bytes: &[u8], path: &Path) -> Result<u64> {
    let bad = |offset: u64, why: &str| Error::corruption(path, offset, why.to_string());
    let text = std::str::from_utf8(bytes).map_err(|e| bad(e.valid_up_to() as u64, "not UTF-8"))?;
    let line = text
        .strip_suffix('\n')
        .ok_or_else(|| bad(bytes.len() as u64, "missing newline"))?;
    let (name, crc) = line
        .split_once(" crc32=")
        .ok_or_else(|| bad(0, "not of the form `MANIFEST-n crc32=x`"))?;
    let number = name
        .strip_prefix("MANIFEST-")
        .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|d| d.parse::<u64>().ok())
        .ok_or_else(|| bad(0, "bad manifest name"))?;
    let expected = format!("{:08x}", crc32fast::hash(name.as_bytes()));
    if crc != expected {
        return Err(bad(
            name.len() as u64 + 7,
            "checksum of the manifest name does not match",
        ));
    }
    Ok(number)
}

/// Reads manifest `path`: the state it describes and how many edits it held.
///
/// A torn last edit (cut off or damaged beyond the last sync mark, with nothing valid
/// after it) is ignored: it was never acted on. Anything else is corruption.
///
/// # Errors
/// [`Error::Corruption`] (file, offset) or I/O errors.
pub fn read_manifest(
    fs: &dyn Fs,
    path: &Path,
    expected_number: u64,
) -> Result<(ManifestState, usize)> {
    read_manifest_in_full(fs, path, expected_number).map(|read| (read.state, read.edits))
}

/// What [`read_manifest_in_full`] found.
#[derive(Debug, Clone)]
pub struct ManifestRead {
    /// The state the manifest describes.
    pub state: ManifestState,
    /// Edits it held.
    pub edits: usize,
    /// A torn last edit that was ignored: its offset and the bytes from there to the
    /// end of the file.
    pub torn_tail: Option<(u64, u64)>,
}

/// As [`read_manifest`], also reporting a torn last edit it ignored.
///
/// # Errors
/// As [`read_manifest`].
pub fn read_manifest_in_full(
    fs: &dyn Fs,
    path: &Path,
    expected_number: u64,
) -> Result<ManifestRead> {
    let bytes = fs.open(path)?.read_all()?;
    let header = bytes
        .get(..MANIFEST_HEADER_LEN)
        .ok_or_else(|| Error::corruption(path, 0, "manifest shorter than its header"))?;
    if header[..8] != MANIFEST_MAGIC {
        return Err(Error::corruption(
            path,
            0,
            "bad magic: not a Strata manifest",
        ));
    }
    let mut r = Reader::new(&header[8..]);
    let version = r.u32_le().unwrap_or(0);
    let number = r.u64_le().unwrap_or(0);
    let salt = Salt(r.u32_le().unwrap_or(0));
    let crc = r.u32_le().unwrap_or(0);
    if crc32fast::hash(&header[..24]) != crc {
        return Err(Error::corruption(
            path,
            24,
            "manifest header checksum mismatch",
        ));
    }
    if version != MANIFEST_FORMAT_VERSION {
        return Err(Error::corruption(
            path,
            8,
            format!(
                "manifest format version {version}; this build reads {MANIFEST_FORMAT_VERSION}"
            ),
        ));
    }
    if number != expected_number {
        return Err(Error::corruption(
            path,
            12,
            format!("header names manifest {number}, CURRENT names {expected_number}"),
        ));
    }
    // The highest offset declared durable by a sync mark anywhere in the file.
    let declared = max_declared_synced(&bytes, MANIFEST_HEADER_LEN, salt, number)
        .unwrap_or(0)
        .max(MANIFEST_HEADER_LEN as u64);
    let mut state = ManifestState::default();
    let mut edits = 0;
    let mut torn_tail = None;
    let mut reader = PayloadReader::new(&bytes, MANIFEST_HEADER_LEN, salt);
    loop {
        match reader.next_payload() {
            PayloadItem::End => break,
            PayloadItem::Payload(payload, at) => {
                let edit = VersionEdit::decode(&payload)
                    .map_err(|why| Error::corruption(path, at as u64, why))?;
                state
                    .apply(&edit)
                    .map_err(|why| Error::corruption(path, at as u64, why))?;
                edits += 1;
            }
            PayloadItem::Incomplete(at) | PayloadItem::Damaged(at, _) if at as u64 >= declared => {
                // A torn last edit: its change never took effect.
                torn_tail = Some((at as u64, (bytes.len() - at) as u64));
                break;
            }
            PayloadItem::Incomplete(at) => {
                return Err(Error::corruption(
                    path,
                    at as u64,
                    "manifest edit cut off below its durable end",
                ))
            }
            PayloadItem::Damaged(at, why) => return Err(Error::corruption(path, at as u64, why)),
        }
    }
    if edits == 0 {
        return Err(Error::corruption(
            path,
            MANIFEST_HEADER_LEN as u64,
            "manifest holds no edit",
        ));
    }
    Ok(ManifestRead {
        state,
        edits,
        torn_tail,
    })
}

/// The `op` of the [`Error::Io`] a [`ManifestWriter`] returns when writing a record
/// (not syncing it) ran out of space: the record is at most a torn tail, never read
/// back.
pub const MANIFEST_WRITE_FAILED: &str = "append to the manifest (nothing of the record counts)";

/// Whether `e` is a failed manifest write (see [`MANIFEST_WRITE_FAILED`]).
pub fn write_failed(e: &Error) -> bool {
    matches!(e, Error::Io { op, .. } if *op == MANIFEST_WRITE_FAILED)
}

/// The `op` of the [`Error::Io`] [`ManifestWriter::create`] returns when replacing
/// `CURRENT` or syncing the directory after it failed: which manifest is installed is
/// unknown, so this is never retried in place.
pub const MANIFEST_INSTALL_FAILED: &str = "install a new manifest (CURRENT may name it or not)";

/// Whether `e` is a failed manifest installation (see [`MANIFEST_INSTALL_FAILED`]).
pub fn install_failed(e: &Error) -> bool {
    matches!(e, Error::Io { op, .. } if *op == MANIFEST_INSTALL_FAILED)
}

/// Appends edits to the live manifest.
#[derive(Debug)]
pub struct ManifestWriter {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    number: u64,
    salt: Salt,
    file: Arc<dyn FsFile>,
    len: u64,
    marked: u64,
    /// Set by the first failed write or fsync: the file's unsynced tail is then unknown,
    /// so nothing more is appended to it.
    failed: Option<String>,
    /// Bytes written by `create` (header, snapshot edit, sync mark).
    base_len: u64,
}

impl ManifestWriter {
    /// Writes a new manifest `number` holding `state` as one snapshot edit, makes it
    /// durable and installs it as `CURRENT`. The previous manifest is removed.
    ///
    /// # Errors
    /// I/O errors before `CURRENT` was replaced (it then still names the previous
    /// manifest, and the new files are removed); an I/O error with op
    /// [`MANIFEST_INSTALL_FAILED`] when replacing it or syncing the directory failed
    /// (which manifest a crash would leave is then unknown).
    pub fn create(
        fs: Arc<dyn Fs>,
        dir: &Path,
        number: u64,
        state: &ManifestState,
        previous: Option<u64>,
    ) -> Result<ManifestWriter> {
        let path = dir.join(manifest_file_name(number));
        let tmp = dir.join("CURRENT.tmp");
        let salt = Salt::random();
        let mut buf = encode_header(number, salt).to_vec();
        encode_payload(&mut buf, salt, &state.snapshot_edit().encode());
        let synced = buf.len() as u64;
        encode_sync_mark(&mut buf, salt, number, synced);
        let prepared = (|| -> strata_wal::Result<Arc<dyn strata_wal::FsFile>> {
            let file = fs.create(&path)?;
            file.append(&buf)?;
            file.sync_data()?;
            let current = fs.create(&tmp)?;
            current.append(&encode_current(number))?;
            current.sync_data()?;
            Ok(file)
        })();
        let file = match prepared {
            Ok(file) => file,
            Err(e) => {
                // Nothing is installed: leave nothing behind either (a full disk
                // retrying rollovers must not fill up with partial manifests).
                let _ = fs.remove(&path);
                let _ = fs.remove(&tmp);
                return Err(e.into());
            }
        };
        // From the rename on, which manifest a crash leaves installed is unknown until
        // the directory is synced: a failure there is not retryable.
        fs.rename(&tmp, &dir.join(CURRENT))
            .and_then(|()| fs.sync_dir(dir))
            .map_err(|e| match e {
                strata_wal::Error::Io { path, source, .. } => Error::Io {
                    op: MANIFEST_INSTALL_FAILED,
                    path,
                    source,
                },
                other => other.into(),
            })?;
        if let Some(old) = previous.filter(|&old| old != number) {
            // A previous manifest left behind is removed by the next open.
            let _ = fs.remove(&dir.join(manifest_file_name(old)));
        }
        let len = buf.len() as u64;
        Ok(ManifestWriter {
            fs,
            dir: dir.to_path_buf(),
            number,
            salt,
            file,
            len,
            base_len: len,
            failed: None,
            marked: len,
        })
    }

    /// The manifest's number.
    pub fn number(&self) -> u64 {
        self.number
    }

    /// Bytes in the manifest file.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Bytes the manifest held when it was created (its snapshot of the state).
    pub fn base_len(&self) -> u64 {
        self.base_len
    }

    /// Whether only the header was written (never true after `create`).
    pub fn is_empty(&self) -> bool {
        self.len <= MANIFEST_HEADER_LEN as u64
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file system.
    pub fn fs(&self) -> &Arc<dyn Fs> {
        &self.fs
    }

    /// Appends `edit` and fsyncs it. When this returns, the edit survives a crash
    /// (but may still be judged a torn tail until [`ManifestWriter::mark_durable`]).
    ///
    /// # Errors
    /// I/O errors. After any, the writer refuses every later append: a failed write
    /// ([`write_failed`]) left at most a torn record, so the state may be written to a
    /// new manifest instead; after a failed fsync the edit may be on disk or not, and
    /// the caller must treat the database as poisoned.
    pub fn append(&mut self, edit: &VersionEdit) -> Result<()> {
        self.check()?;
        let mut buf = Vec::new();
        encode_payload(&mut buf, self.salt, &edit.encode());
        self.write(&buf)?;
        self.len += buf.len() as u64;
        Ok(())
    }

    /// Appends `buf` and fsyncs it. A write (as opposed to the fsync) that ran out of
    /// space is returned as [`Error::Io`] with op [`MANIFEST_WRITE_FAILED`]: at most a
    /// prefix of the record reached the file, a torn tail that reading ignores.
    fn write(&mut self, buf: &[u8]) -> Result<()> {
        if let Err(e) = self.file.append(buf) {
            self.failed = Some(format!("writing the manifest failed: {e}"));
            return Err(match e {
                // Out of space: the write stopped short, nothing of it counts. (Other
                // write errors are not trusted that far: on some file systems a
                // failed write may still land.)
                strata_wal::Error::Io { path, source, .. }
                    if source.kind() == std::io::ErrorKind::StorageFull =>
                {
                    Error::Io {
                        op: MANIFEST_WRITE_FAILED,
                        path,
                        source,
                    }
                }
                other => Error::from(other),
            });
        }
        let synced = self.file.sync_data();
        self.note(synced)
    }

    fn check(&self) -> Result<()> {
        match &self.failed {
            Some(cause) => Err(Error::Poisoned {
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    fn note(&mut self, result: strata_wal::Result<()>) -> Result<()> {
        result.map_err(|e| {
            self.failed = Some(format!("writing the manifest failed: {e}"));
            Error::from(e)
        })
    }

    /// Declares every edit appended so far durable (a sync mark, fsynced). Call before
    /// deleting anything because of those edits.
    ///
    /// # Errors
    /// I/O errors.
    pub fn mark_durable(&mut self) -> Result<()> {
        self.check()?;
        if self.marked >= self.len {
            return Ok(());
        }
        let mut buf = Vec::new();
        encode_sync_mark(&mut buf, self.salt, self.number, self.len);
        self.write(&buf)?;
        self.len += buf.len() as u64;
        // The mark itself needs no mark: nothing new is left to declare.
        self.marked = self.len;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_wal::FaultFs;

    fn sample_edit() -> VersionEdit {
        VersionEdit {
            next_file_number: Some(12),
            next_keyspace_id: Some(3),
            last_seq: Some(SeqNo(99)),
            created_keyspaces: vec![KeyspaceRecord {
                id: KeyspaceId(2),
                name: "agents".into(),
                options: vec![1, 2, 3],
            }],
            dropped_keyspaces: vec![],
            added_tables: vec![(
                KeyspaceId(2),
                TableMeta {
                    id: TableId(7),
                    level: Level(0),
                    size: 4096,
                    smallest: b"a\x01\0\0\0\0\0\0\0".to_vec(),
                    largest: b"z\x01\0\0\0\0\0\0\0".to_vec(),
                    min_seq: SeqNo(1),
                    max_seq: SeqNo(50),
                    entries: 10,
                    deletions: 2,
                    run: 7,
                    value_refs: vec![ValueRef {
                        segment: 6,
                        bytes: 70_000,
                        records: 4,
                    }],
                },
            )],
            removed_tables: vec![],
            flushed_seqs: vec![(KeyspaceId(2), SeqNo(50))],
            added_prefix_tombstones: vec![(KeyspaceId(2), b"agent-1/".to_vec(), SeqNo(40))],
            removed_prefix_tombstones: vec![],
            added_segments: vec![(
                KeyspaceId(2),
                SegmentMeta {
                    id: 6,
                    file_bytes: 70_032,
                    record_bytes: 70_000,
                    records: 4,
                },
            )],
            removed_segments: vec![],
            history_floors: vec![(KeyspaceId(2), SeqNo(30))],
            time_marks: Some(TimeMarkEdit {
                keep_from: SeqNo(5),
                keep_to: SeqNo::MAX,
                added: vec![
                    TimeMark {
                        seq: SeqNo(20),
                        unix_millis: 1_700_000_000_000,
                    },
                    TimeMark {
                        seq: SeqNo(50),
                        unix_millis: 1_700_000_001_000,
                    },
                ],
            }),
        }
    }

    #[test]
    fn edit_round_trip() {
        let removal = VersionEdit {
            removed_segments: vec![(KeyspaceId(2), 3)],
            ..VersionEdit::default()
        };
        assert_eq!(VersionEdit::decode(&removal.encode()).unwrap(), removal);
        let e = sample_edit();
        assert_eq!(VersionEdit::decode(&e.encode()).unwrap(), e);
        let bytes = e.encode();
        for cut in 0..bytes.len() {
            // Never panics; most cuts are errors.
            let _ = VersionEdit::decode(&bytes[..cut]);
        }
    }

    #[test]
    fn current_round_trip_and_damage() {
        let c = encode_current(42);
        assert_eq!(decode_current(&c, Path::new("CURRENT")).unwrap(), 42);
        for i in 0..c.len() {
            let mut bad = c.clone();
            bad[i] ^= 0x04;
            assert!(
                decode_current(&bad, Path::new("CURRENT")).is_err(),
                "flip at {i}"
            );
        }
    }

    #[test]
    fn writer_and_reader_agree_and_torn_tail_is_ignored() {
        let fault = FaultFs::new(1);
        let fs: Arc<dyn Fs> = Arc::new(fault.clone());
        let dir = Path::new("/db");
        fs.create_dir_all(dir).unwrap();
        let mut state = ManifestState::default();
        let base = VersionEdit {
            created_keyspaces: vec![KeyspaceRecord {
                id: KeyspaceId(2),
                name: "agents".into(),
                options: vec![],
            }],
            ..VersionEdit::default()
        };
        state.apply(&base).unwrap();
        let mut w = ManifestWriter::create(Arc::clone(&fs), dir, 1, &state, None).unwrap();
        let mut e = sample_edit();
        e.created_keyspaces.clear();
        w.append(&e).unwrap();
        state.apply(&e).unwrap();
        w.mark_durable().unwrap();
        // A mark needs no mark of its own: a second call writes nothing.
        let marked_len = w.len();
        w.mark_durable().unwrap();
        assert_eq!(w.len(), marked_len);
        let path = dir.join(manifest_file_name(1));
        let (read, edits) = read_manifest(fs.as_ref(), &path, 1).unwrap();
        assert_eq!(read, state);
        assert_eq!(edits, 2);
        // An unmarked, torn last edit is ignored.
        let mut e2 = VersionEdit::default();
        e2.flushed_seqs.push((KeyspaceId(2), SeqNo(77)));
        w.append(&e2).unwrap();
        let len = fault.file_len(&path).unwrap();
        let file = fs.open(&path).unwrap();
        file.truncate(len - 3).unwrap();
        let (read, _) = read_manifest(fs.as_ref(), &path, 1).unwrap();
        assert_eq!(read, state);
        // Damage below the mark is corruption.
        fault
            .flip_bit(&path, MANIFEST_HEADER_LEN as u64 + 12, 1)
            .unwrap();
        assert!(read_manifest(fs.as_ref(), &path, 1)
            .unwrap_err()
            .is_corruption());
    }

    #[test]
    fn a_failed_append_refuses_every_later_write() {
        use strata_wal::{FaultKind, FaultOp, FaultRule};
        let fault = FaultFs::new(2);
        let fs: Arc<dyn Fs> = Arc::new(fault.clone());
        let dir = Path::new("/db");
        fs.create_dir_all(dir).unwrap();
        let mut w =
            ManifestWriter::create(Arc::clone(&fs), dir, 1, &ManifestState::default(), None)
                .unwrap();
        fault.inject(FaultRule::once(FaultOp::Sync, 1, FaultKind::Eio));
        assert!(w.append(&sample_edit()).is_err());
        // The fault was once only; the manifest still refuses, because its unsynced
        // tail is unknown.
        assert!(matches!(
            w.append(&VersionEdit::default()),
            Err(Error::Poisoned { .. })
        ));
        assert!(matches!(w.mark_durable(), Err(Error::Poisoned { .. })));
    }
}
