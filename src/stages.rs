//! The standard stage kinds every node registers. They make the example pipeline
//! work out of the box and double as reference implementations of [`Stage`].
//!
//! | kind               | role      | config                                              |
//! |--------------------|-----------|-----------------------------------------------------|
//! | `text-source`      | source    | `text` or `lines`, `repeat` (1), `batch` (64)       |
//! | `tokenize`         | transform | `min_len` (1): lowercase words of at least that length |
//! | `word-count`       | sink      | `top` (10): emits the `top` most frequent words     |
//! | `length-histogram` | sink      | none: emits `{length: count}`                       |
//! | `collect`          | sink      | none: passes every item to the run's results        |
//! | `count`            | sink      | none: emits the number of items seen                |

use std::collections::BTreeMap;

use plexus_actors::Datum;
use plexus_actors::pipeline::{Outbox, Produce, Stage, StageError, register_stage};
use plexus_actors::runtime::Kinds;
use serde::Deserialize;

/// Registers every standard kind.
pub fn register_all(kinds: &Kinds) {
    register_stage(kinds, "text-source", |cfg| {
        Ok(Box::new(TextSource::from_config(cfg)?))
    });
    register_stage(kinds, "tokenize", |cfg| {
        Ok(Box::new(Tokenize::from_config(cfg)?))
    });
    register_stage(kinds, "word-count", |cfg| {
        Ok(Box::new(WordCount::from_config(cfg)?))
    });
    register_stage(kinds, "length-histogram", |cfg| {
        no_config(cfg)?;
        Ok(Box::new(LengthHistogram::default()))
    });
    register_stage(kinds, "collect", |cfg| {
        no_config(cfg)?;
        Ok(Box::new(Collect))
    });
    register_stage(kinds, "count", |cfg| {
        no_config(cfg)?;
        Ok(Box::new(Count(0)))
    });
}

fn parse<T: for<'de> Deserialize<'de>>(cfg: &serde_json::Value) -> Result<T, String> {
    let cfg = if cfg.is_null() {
        serde_json::Value::Object(Default::default())
    } else {
        cfg.clone()
    };
    serde_json::from_value(cfg).map_err(|e| e.to_string())
}

fn no_config(cfg: &serde_json::Value) -> Result<(), String> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Empty {}
    parse::<Empty>(cfg).map(|_| ())
}

/// Emits lines of text, `repeat` times over.
pub struct TextSource {
    lines: Vec<String>,
    repeat: u64,
    batch: usize,
    round: u64,
    next: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TextSourceConfig {
    text: Option<String>,
    lines: Option<Vec<String>>,
    #[serde(default = "one")]
    repeat: u64,
    #[serde(default = "default_batch")]
    batch: usize,
}

fn one() -> u64 {
    1
}

fn default_batch() -> usize {
    64
}

/// Upper bound on `batch`, so one `produce` call stays short.
const SOURCE_BATCH_MAX: usize = 4096;

impl TextSource {
    fn from_config(cfg: &serde_json::Value) -> Result<Self, String> {
        let c: TextSourceConfig = parse(cfg)?;
        let mut lines: Vec<String> = c.lines.unwrap_or_default();
        if let Some(text) = c.text {
            lines.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(String::from),
            );
        }
        if lines.is_empty() {
            return Err("give `text` or `lines`".into());
        }
        if c.batch == 0 || c.batch > SOURCE_BATCH_MAX {
            return Err(format!(
                "`batch` must be 1..={SOURCE_BATCH_MAX}, not {}",
                c.batch
            ));
        }
        Ok(Self {
            lines,
            repeat: c.repeat,
            batch: c.batch,
            round: 0,
            next: 0,
        })
    }
}

impl Stage for TextSource {
    fn produce(&mut self, out: &mut Outbox) -> Result<Produce, StageError> {
        for _ in 0..self.batch {
            if self.round >= self.repeat {
                return Ok(Produce::Done);
            }
            out.emit(self.lines[self.next].as_str());
            self.next += 1;
            if self.next == self.lines.len() {
                self.next = 0;
                self.round += 1;
            }
        }
        Ok(if self.round >= self.repeat {
            Produce::Done
        } else {
            Produce::More
        })
    }

    fn process(&mut self, _: Datum, _: &mut Outbox) -> Result<(), StageError> {
        Err("text-source is a source and takes no input".into())
    }
}

/// Splits text into lowercase words.
pub struct Tokenize {
    min_len: usize,
}

impl Tokenize {
    fn from_config(cfg: &serde_json::Value) -> Result<Self, String> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct C {
            #[serde(default = "one_usize")]
            min_len: usize,
        }
        fn one_usize() -> usize {
            1
        }
        let c: C = parse(cfg)?;
        Ok(Self { min_len: c.min_len })
    }
}

impl Stage for Tokenize {
    fn process(&mut self, item: Datum, out: &mut Outbox) -> Result<(), StageError> {
        let text = item.as_text().ok_or("tokenize expects text")?;
        for word in text.split(|c: char| !c.is_alphanumeric()) {
            if word.chars().count() >= self.min_len {
                out.emit(word.to_lowercase());
            }
        }
        Ok(())
    }
}

/// Counts words; at the end emits the most frequent ones as `[word, count]` pairs,
/// most frequent first (ties alphabetical).
pub struct WordCount {
    counts: BTreeMap<String, i64>,
    top: usize,
}

impl WordCount {
    fn from_config(cfg: &serde_json::Value) -> Result<Self, String> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct C {
            #[serde(default = "ten")]
            top: usize,
        }
        fn ten() -> usize {
            10
        }
        let c: C = parse(cfg)?;
        Ok(Self {
            counts: BTreeMap::new(),
            top: c.top,
        })
    }
}

impl Stage for WordCount {
    fn process(&mut self, item: Datum, _: &mut Outbox) -> Result<(), StageError> {
        let word = item.as_text().ok_or("word-count expects text")?;
        *self.counts.entry(word.to_string()).or_default() += 1;
        Ok(())
    }

    fn finish(&mut self, out: &mut Outbox) -> Result<(), StageError> {
        let mut ranked: Vec<(&String, &i64)> = self.counts.iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let top = ranked
            .into_iter()
            .take(self.top)
            .map(|(w, c)| Datum::List(vec![Datum::Text(w.clone()), Datum::Int(*c)]))
            .collect();
        out.emit(Datum::Map(BTreeMap::from([(
            "top_words".to_string(),
            Datum::List(top),
        )])));
        Ok(())
    }
}

/// Histogram of text lengths (in characters).
#[derive(Default)]
pub struct LengthHistogram {
    counts: BTreeMap<usize, i64>,
}

impl Stage for LengthHistogram {
    fn process(&mut self, item: Datum, _: &mut Outbox) -> Result<(), StageError> {
        let text = item.as_text().ok_or("length-histogram expects text")?;
        *self.counts.entry(text.chars().count()).or_default() += 1;
        Ok(())
    }

    fn finish(&mut self, out: &mut Outbox) -> Result<(), StageError> {
        let hist = self
            .counts
            .iter()
            .map(|(len, n)| (format!("{len:02}"), Datum::Int(*n)))
            .collect();
        out.emit(Datum::Map(BTreeMap::from([(
            "word_lengths".to_string(),
            Datum::Map(hist),
        )])));
        Ok(())
    }
}

/// Passes items through unchanged.
pub struct Collect;

impl Stage for Collect {
    fn process(&mut self, item: Datum, out: &mut Outbox) -> Result<(), StageError> {
        out.emit(item);
        Ok(())
    }
}

/// Counts items; emits the count at the end.
pub struct Count(i64);

impl Stage for Count {
    fn process(&mut self, _: Datum, _: &mut Outbox) -> Result<(), StageError> {
        self.0 += 1;
        Ok(())
    }

    fn finish(&mut self, out: &mut Outbox) -> Result<(), StageError> {
        out.emit(Datum::Map(BTreeMap::from([(
            "count".to_string(),
            Datum::Int(self.0),
        )])));
        Ok(())
    }
}
