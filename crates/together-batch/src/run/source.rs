//! The input as a run reads it: indexed once (each job's place in the file,
//! a hash of its custom_id and of its request, and its route), then each
//! job read again from the file when its turn to be sent comes, so a run
//! holds tens of bytes per waiting line, never the lines.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use http::Method;

use crate::input::{self, Entry, Job, LineRef, id_hash};

/// What the index keeps of a job until it is sent.
#[derive(Debug, Clone, Copy)]
pub(crate) struct JobRef {
    pub(crate) at: LineRef,
    /// [`id_hash`] of its custom_id.
    pub(crate) id: u64,
    /// Its request's fingerprint hash.
    pub(crate) fingerprint: u64,
    /// Its method and path, an index into [`Indexed::targets`].
    pub(crate) target: u32,
}

/// The input, indexed.
#[derive(Debug)]
pub(crate) struct Indexed {
    /// Non-blank lines.
    pub(crate) lines: u64,
    /// Lines that cannot be requests, with why.
    pub(crate) bad: Vec<Entry>,
    pub(crate) jobs: Vec<JobRef>,
    /// The distinct (method, path without its query) of the jobs.
    pub(crate) targets: Vec<(Method, String)>,
}

/// Where to read jobs again from.
pub(crate) struct Source {
    file: File,
    endpoint: Option<String>,
}

impl Source {
    pub(crate) fn open(path: &Path, endpoint: Option<&str>) -> std::io::Result<Self> {
        Ok(Source {
            file: File::open(path)?,
            endpoint: endpoint.map(str::to_owned),
        })
    }

    /// The line at `at`, parsed again.
    fn entry(&self, at: LineRef) -> Result<Entry, String> {
        let mut raw = vec![0; at.len as usize];
        self.file
            .read_exact_at(&mut raw, at.offset)
            .map_err(|e| format!("cannot read line {} of the input again: {e}", at.line))?;
        Ok(self.parse(&raw, at))
    }

    fn parse(&self, raw: &[u8], at: LineRef) -> Entry {
        input::parse_line(raw, at.line as usize, self.endpoint.as_deref())
    }

    /// The job `r` stands for, parsed from `raw`; an error when its line is
    /// no longer what the index read (the file changed during the run).
    fn check(&self, r: &JobRef, entry: Entry) -> Result<Job, String> {
        match entry {
            Entry::Job(job)
                if id_hash(&job.custom_id) == r.id
                    && input::fingerprint_hash(&job.fingerprint) == Some(r.fingerprint) =>
            {
                Ok(job)
            }
            _ => Err(format!(
                "line {} of the input changed during the run: it is left unanswered, \
                 to be sent by the next run",
                r.at.line
            )),
        }
    }
}

/// Reads one route's jobs again, in order, a block of the file at a time
/// (a route's lines are mostly near each other: one read serves many).
pub(crate) struct Reader {
    source: Arc<Source>,
    block: Vec<u8>,
    /// The file offset of `block[0]`.
    start: u64,
}

/// How much of the input one read takes.
const BLOCK: usize = 256 << 10;

impl Reader {
    pub(crate) fn new(source: Arc<Source>) -> Self {
        Reader {
            source,
            block: Vec::new(),
            start: 0,
        }
    }

    /// The job `r` stands for, read again.
    pub(crate) fn job(&mut self, r: &JobRef) -> Result<Job, String> {
        let (from, len) = (r.at.offset, r.at.len as usize);
        let inside =
            from >= self.start && from + len as u64 <= self.start + self.block.len() as u64;
        if !inside {
            self.block.resize(BLOCK.max(len), 0);
            let mut got = 0;
            while got < len {
                match self
                    .source
                    .file
                    .read_at(&mut self.block[got..], from + got as u64)
                {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        self.block.clear();
                        return Err(format!(
                            "cannot read line {} of the input again: {e}",
                            r.at.line
                        ));
                    }
                }
            }
            self.block.truncate(got);
            self.start = from;
            if got < len {
                return self.source.check(
                    r,
                    Entry::Bad {
                        custom_id: None,
                        line: r.at.line as usize,
                        method: None,
                        url: None,
                        message: String::new(),
                    },
                );
            }
        }
        let at = (from - self.start) as usize;
        let entry = self.source.parse(&self.block[at..at + len], r.at);
        self.source.check(r, entry)
    }
}

/// Reads the input once: its jobs' places and hashes, its bad lines.
/// Fails (before anything is sent) when two lines share a custom_id.
pub(crate) fn index(
    path: &Path,
    endpoint: Option<&str>,
) -> std::io::Result<Result<Indexed, String>> {
    let source = Source::open(path, endpoint)?;
    let reader = std::io::BufReader::with_capacity(1 << 16, File::open(path)?);
    let mut out = Indexed {
        lines: 0,
        bad: Vec::new(),
        jobs: Vec::new(),
        targets: Vec::new(),
    };
    let mut targets: HashMap<(Method, String), u32> = HashMap::new();
    // custom_id hash -> the first line that has it.
    let mut first: HashMap<u64, LineRef> = HashMap::new();
    let mut dups: Vec<(String, u32, u32)> = Vec::new();
    let mut collision = None;
    input::scan_lines(reader, |raw, at| {
        out.lines += 1;
        let entry = input::parse_line(raw, at.line as usize, endpoint);
        if let Some(id) = entry.custom_id() {
            if let Some(earlier) = first.get(&id_hash(id)) {
                let same = source
                    .entry(*earlier)
                    .is_ok_and(|e| e.custom_id() == Some(id));
                if same {
                    dups.push((id.to_owned(), earlier.line, at.line));
                } else {
                    collision.get_or_insert((earlier.line, at.line));
                }
                return;
            }
            first.insert(id_hash(id), at);
        }
        match entry {
            Entry::Job(job) => {
                let path = job.path.split(['?', '#']).next().unwrap_or(&job.path);
                let key = (job.method.clone(), path.to_owned());
                let next = u32::try_from(out.targets.len()).unwrap_or(u32::MAX);
                let target = *targets.entry(key.clone()).or_insert_with(|| {
                    out.targets.push(key);
                    next
                });
                out.jobs.push(JobRef {
                    at,
                    id: id_hash(&job.custom_id),
                    fingerprint: input::fingerprint_hash(&job.fingerprint).unwrap_or(0),
                    target,
                });
            }
            bad @ Entry::Bad { .. } => out.bad.push(bad),
        }
    })?;
    if !dups.is_empty() {
        return Ok(Err(input::duplicates_message(&dups)));
    }
    if let Some((a, b)) = collision {
        return Ok(Err(format!(
            "the custom_ids of lines {a} and {b} differ but share a 64-bit hash, which \
             this run keys lines by: rename one (nothing was sent)"
        )));
    }
    Ok(Ok(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_are_read_again_as_they_were_and_a_changed_line_is_refused() {
        let dir =
            std::env::temp_dir().join(format!("together-batch-source-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("in.jsonl");
        let line = |id: &str, input: &str| {
            format!(
                r#"{{"custom_id": "{id}", "url": "/v1/embeddings", "body": {{"model": "m", "input": "{input}"}}}}"#
            )
        };
        let text = format!(
            "\u{feff}{}\r\n\r\n{}\rnot json\n{}\n",
            line("a", "x"),
            line("b", "y"),
            line("c", "z")
        );
        std::fs::write(&path, &text).unwrap();
        let indexed = index(&path, None).unwrap().unwrap();
        assert_eq!(indexed.lines, 4);
        assert_eq!(indexed.bad.len(), 1);
        assert_eq!(
            indexed.targets,
            [(Method::POST, "/v1/embeddings".to_owned())]
        );
        let mut reader = Reader::new(Arc::new(Source::open(&path, None).unwrap()));
        let ids: Vec<String> = indexed
            .jobs
            .iter()
            .map(|r| reader.job(r).unwrap().custom_id)
            .collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(
            indexed.jobs.iter().map(|r| r.at.line).collect::<Vec<_>>(),
            [1, 3, 5]
        );
        // The file changes under the run, or is cut short: the job is
        // refused, not sent as something else.
        for changed in [
            text.replace("\"z\"", "\"Z\""),
            text[..text.len() - 10].to_owned(),
        ] {
            std::fs::write(&path, changed).unwrap();
            let mut reader = Reader::new(Arc::new(Source::open(&path, None).unwrap()));
            assert!(
                reader
                    .job(&indexed.jobs[2])
                    .unwrap_err()
                    .contains("changed")
            );
        }
        // Duplicates fail, naming both lines.
        std::fs::write(&path, format!("{}\n{}\n", line("a", "x"), line("a", "y"))).unwrap();
        let err = index(&path, None).unwrap().unwrap_err();
        assert!(err.contains("\"a\" on lines 1 and 2"), "{err}");
    }
}
