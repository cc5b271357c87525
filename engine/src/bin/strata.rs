//! `strata`: the operator's tool for a Strata database directory.
//!
//! `info`, `verify`, `dump-wal` and `dump-table` read files without opening the
//! database: they write nothing and work on copies, backups and directories another
//! process has open. `get`, `scan` and `checkpoint` open the database (taking its
//! lock, replaying its WAL) like any embedding program. Built with
//! `cargo build --release -p strata --features cli`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use strata::iter::InternalIterator;
use strata::key::parse_internal_key;
use strata::manifest::{decode_current, manifest_file_name, read_manifest, CURRENT};
use strata::{Db, Fs, Options, SeqNo, StdFs};

const USAGE: &str = "\
usage: strata <command> <args>

commands (offline: nothing is written):
  info <db>                     keyspaces, levels, tables, value-log garbage, WAL, sequence numbers
  verify <db>                   check every checksum of every file; exit 1 on damage
  dump-wal <db>                 every WAL record: sequence number, keyspace id, op, key, value size
  dump-table <file.sst>         a table's properties and every entry

commands that open the database:
  get <db> <keyspace> <key> [--at SEQNO]
  scan <db> <keyspace> [--prefix P] [--limit N] [--reverse] [--at SEQNO]
  checkpoint <db> <target-dir>
  changes <db> <since-seqno> [--limit N]

keys are bytes: printable ASCII as is, anything else as \\xNN.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strata: {e}");
            ExitCode::FAILURE
        }
    }
}

type CliResult = Result<(), Box<dyn std::error::Error>>;

fn run(args: &[String]) -> CliResult {
    let Some(command) = args.first() else {
        println!("{USAGE}");
        return Ok(());
    };
    let rest = &args[1..];
    let fs: Arc<dyn Fs> = Arc::new(StdFs);
    match (command.as_str(), rest) {
        ("info", [db]) => info(&fs, Path::new(db)),
        ("verify", [db]) => {
            let r = strata::verify::verify_directory(&fs, Path::new(db))?;
            println!(
                "ok: {} keyspaces, {} tables ({} entries), {} value-log segments ({} records), {} WAL records, {} bytes checked",
                r.keyspaces, r.tables, r.table_entries, r.segments, r.segment_records, r.wal_records, r.bytes
            );
            if let Some((offset, len)) = r.manifest_torn_tail {
                println!(
                    "torn tail: the manifest's last edit at offset {offset} ({len} bytes) was cut off \
                     by a crash and is ignored (it never took effect)"
                );
            }
            if let Some(t) = &r.wal_torn_tail {
                println!(
                    "torn tail: {} at offset {} ({} bytes, {}) was never acknowledged as \
                     durable; opening the database cuts it",
                    t.file.display(),
                    t.offset,
                    t.dropped_bytes,
                    t.reason
                );
            }
            Ok(())
        }
        ("dump-wal", [db]) => dump_wal(&fs, Path::new(db)),
        ("dump-table", [file]) => dump_table(&fs, Path::new(file)),
        ("get", [db, ks, key, flags @ ..]) => {
            let flags = Flags::parse(flags)?;
            let db = open(db)?;
            let ks = db.keyspace(ks)?;
            let key = unescape(key)?;
            let value = match flags.at {
                Some(seq) => db.snapshot_at(seq)?.get(&ks, &key)?,
                None => ks.get(&key)?,
            };
            match value {
                Some(v) => println!("{}", escape(&v)),
                None => return Err("not found".into()),
            }
            Ok(())
        }
        ("scan", [db, ks, flags @ ..]) => {
            let flags = Flags::parse(flags)?;
            let db = open(db)?;
            let ks = db.keyspace(ks)?;
            let snapshot = match flags.at {
                Some(seq) => db.snapshot_at(seq)?,
                None => db.snapshot(),
            };
            let iter = match &flags.prefix {
                Some(p) => snapshot.prefix(&ks, p),
                None => snapshot.iter(&ks),
            };
            let iter: Box<dyn Iterator<Item = strata::Result<(strata::Bytes, strata::Bytes)>>> =
                if flags.reverse {
                    Box::new(iter.rev())
                } else {
                    Box::new(iter)
                };
            for kv in iter.take(flags.limit.unwrap_or(usize::MAX)) {
                let (k, v) = kv?;
                println!("{}\t{}", escape(&k), escape(&v));
            }
            Ok(())
        }
        ("checkpoint", [db, target]) => {
            let db = open(db)?;
            let info = db.checkpoint(target)?;
            println!(
                "checkpoint at sequence number {}: {} files linked, {} copied, {} bytes copied",
                info.seqno, info.files_linked, info.files_copied, info.bytes_copied
            );
            Ok(())
        }
        ("changes", [db, since, flags @ ..]) => {
            let flags = Flags::parse(flags)?;
            let db = open(db)?;
            let since = SeqNo(since.parse()?);
            for batch in db
                .changes_since(since)?
                .take(flags.limit.unwrap_or(usize::MAX))
            {
                let batch = batch?;
                println!(
                    "batch {}..={} (after {})",
                    batch.first, batch.last, batch.since
                );
                for c in &batch.changes {
                    println!(
                        "  {} {:?} {} ({} bytes)",
                        c.keyspace,
                        c.op,
                        escape(&c.key),
                        c.value.len()
                    );
                }
            }
            Ok(())
        }
        _ => Err(format!("unknown command or wrong arguments\n\n{USAGE}").into()),
    }
}

/// Options of `get`, `scan` and `changes`.
#[derive(Default)]
struct Flags {
    prefix: Option<Vec<u8>>,
    limit: Option<usize>,
    reverse: bool,
    at: Option<SeqNo>,
}

impl Flags {
    fn parse(args: &[String]) -> Result<Flags, Box<dyn std::error::Error>> {
        let mut flags = Flags::default();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut value = || it.next().ok_or_else(|| format!("{a} needs a value"));
            match a.as_str() {
                "--prefix" => flags.prefix = Some(unescape(value()?)?),
                "--limit" => flags.limit = Some(value()?.parse()?),
                "--at" => flags.at = Some(SeqNo(value()?.parse()?)),
                "--reverse" => flags.reverse = true,
                other => return Err(format!("unknown flag {other}").into()),
            }
        }
        Ok(flags)
    }
}

fn open(path: &str) -> strata::Result<Db> {
    Db::open(
        path,
        Options {
            create_if_missing: false,
            background_threads: 1,
            // Retention options are not stored in the database: keep every WAL
            // segment, so opening it here never deletes what a consumer of the
            // change stream still needs.
            wal_retention_bytes: u64::MAX,
            ..Options::default()
        },
    )
}

fn info(fs: &Arc<dyn Fs>, dir: &Path) -> CliResult {
    let current = dir.join(CURRENT);
    let number = decode_current(&fs.open(&current)?.read_all()?, &current)?;
    let (state, edits) = read_manifest(fs.as_ref(), &dir.join(manifest_file_name(number)), number)?;
    println!("database {}", dir.display());
    println!(
        "manifest {} ({} edits), next file number {}, last sequence number {}",
        manifest_file_name(number),
        edits,
        state.next_file_number,
        state.last_seq
    );
    if let (Some(first), Some(last)) = (state.time_marks.first(), state.time_marks.last()) {
        println!(
            "time marks: {} from sequence {} at {} ms to {} at {} ms (Unix epoch)",
            state.time_marks.len(),
            first.seq,
            first.unix_millis,
            last.seq,
            last.unix_millis
        );
    }
    for (id, ks) in &state.keyspaces {
        let name = ks.record.as_ref().map_or("?", |r| r.name.as_str());
        let options = ks
            .record
            .as_ref()
            .and_then(|r| strata::KeyspaceOptions::decode(&r.options));
        println!(
            "keyspace {name:?} (id {id}): flushed through {}, history floor {}",
            ks.flushed_seq, ks.history_floor
        );
        if let Some(o) = &options {
            println!(
                "  durability {:?}, compaction {}, value threshold {:?}, history {:?} seqs / {:?}",
                o.durability,
                o.compaction.name(),
                o.value_threshold,
                o.history_seqs,
                o.history_age
            );
        }
        let mut levels: std::collections::BTreeMap<u8, (usize, u64, u64)> = Default::default();
        for t in ks.tables.values() {
            let l = levels.entry(t.level.0).or_default();
            l.0 += 1;
            l.1 += t.size;
            l.2 += t.entries;
        }
        for (level, (tables, bytes, entries)) in &levels {
            println!("  L{level}: {tables} tables, {bytes} bytes, {entries} entries");
        }
        for s in ks.segments.values() {
            let live: u64 = ks
                .tables
                .values()
                .flat_map(|t| t.value_refs.iter())
                .filter(|r| r.segment == s.id)
                .map(|r| r.bytes)
                .sum();
            let garbage = s.record_bytes.saturating_sub(live);
            println!(
                "  value-log segment {}: {} bytes, {} records, {} live bytes, garbage {:.1}%",
                s.id,
                s.file_bytes,
                s.records,
                live,
                100.0 * garbage as f64 / s.record_bytes.max(1) as f64
            );
        }
    }
    let wal_dir = dir.join("wal");
    if fs.exists(&wal_dir)? {
        let segments = fs.list(&wal_dir)?;
        let mut bytes = 0;
        for name in &segments {
            bytes += fs.open(&wal_dir.join(name))?.len()?;
        }
        let oldest = strata_wal_oldest(fs, &wal_dir)?;
        println!(
            "WAL: {} segments, {bytes} bytes, oldest sequence number held {}",
            segments.len(),
            oldest.map_or("none".to_string(), |s| s.to_string())
        );
    }
    Ok(())
}

fn strata_wal_oldest(fs: &Arc<dyn Fs>, wal_dir: &Path) -> strata::Result<Option<SeqNo>> {
    Ok(strata_wal::WalReader::oldest_available(
        fs.as_ref(),
        wal_dir,
    )?)
}

fn dump_wal(fs: &Arc<dyn Fs>, dir: &Path) -> CliResult {
    let wal_dir: PathBuf = if dir.join("wal").exists() {
        dir.join("wal")
    } else {
        dir.to_path_buf()
    };
    let reader = strata_wal::WalReader::open(
        Arc::clone(fs),
        &wal_dir,
        SeqNo(0),
        strata::RecoveryMode::Strict,
    )?;
    for record in reader {
        let record = record?;
        let entries = strata::changes::decode_logged_entries(&record.payload)
            .ok_or_else(|| format!("the record at sequence {} does not decode", record.seq))?;
        println!(
            "record {}..={} ({} entries)",
            record.seq,
            record.last_seq(),
            entries.len()
        );
        for (i, e) in entries.iter().enumerate() {
            println!(
                "  {} keyspace {} {:?} {} ({} bytes)",
                record.seq.plus(i as u64),
                e.keyspace,
                e.op,
                escape(&e.key),
                e.value.len()
            );
        }
    }
    Ok(())
}

fn dump_table(fs: &Arc<dyn Fs>, file: &Path) -> CliResult {
    let id = file
        .file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.parse().ok())
        .map_or(strata::ids::TableId(0), strata::ids::TableId);
    let table = strata::table::Table::open(fs.open(file)?, id, None, false)?;
    println!("table {}: {} bytes", file.display(), table.file_size());
    println!("properties: {:?}", table.properties());
    let mut it = table.iter();
    it.seek_to_first()?;
    while it.valid() {
        let key = it.key();
        let parsed = parse_internal_key(key).ok_or("a malformed internal key")?;
        println!(
            "{}\t@{}\t{:?}\t{} bytes",
            escape(parsed.user_key),
            parsed.seq,
            parsed.kind,
            it.value().len()
        );
        it.next()?;
    }
    Ok(())
}

/// Printable ASCII as is, everything else (and `\`) as `\xNN`.
fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if (0x20..0x7f).contains(&b) && b != b'\\' {
            out.push(b as char);
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// The inverse of [`escape`].
fn unescape(s: &str) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && bytes.get(i + 1) == Some(&b'x') {
            let hex = s.get(i + 2..i + 4).ok_or("a truncated \\x escape")?;
            out.push(u8::from_str_radix(hex, 16)?);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}
