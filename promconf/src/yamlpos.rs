//! Line numbers of the entries of a YAML document, for error messages.
//!
//! serde_yaml deserializes a configuration (rule file, routing, scrape config) but keeps no positions once it
//! succeeds, so semantic errors ("bad duration in `for`") would have no line. This index walks yaml-rust2's marked events once and records, for
//! every path (`groups/0/rules/2/for`), the line of the key (mapping entries) or of the item (sequence
//! entries), and for scalar values the line where the value's text starts (the first content line of a
//! `|` block), so a query error can point into a multi-line `expr`.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// One path segment: a mapping key or a sequence index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// Where a value's text starts, and whether it is a literal block (`|`), whose lines map one to one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValuePos {
    pub line: usize,
    pub literal_block: bool,
}

/// Lines by path; empty when the text is not YAML that yaml-rust2 reads (serde_yaml reports that).
#[derive(Debug, Default)]
pub struct PosIndex {
    lines: HashMap<Vec<Seg>, usize>,
    values: HashMap<Vec<Seg>, ValuePos>,
    scalars: HashMap<Vec<Seg>, String>,
}

enum Frame {
    Map { path: Vec<Seg>, key: Option<String> },
    Seq { path: Vec<Seg>, next: usize },
}

struct Builder {
    index: PosIndex,
    stack: Vec<Frame>,
    /// Depth of a complex (non-scalar) mapping key being skipped.
    skipping: usize,
}

impl Builder {
    /// The path of the node that starts now, recording its line; None while inside a complex key.
    fn node_start(&mut self, mark: Marker, scalar_key: Option<&str>) -> Option<Vec<Seg>> {
        match self.stack.last_mut() {
            None => Some(vec![]),
            Some(Frame::Seq { path, next }) => {
                let mut p = path.clone();
                p.push(Seg::Index(*next));
                *next += 1;
                self.index.lines.insert(p.clone(), mark.line());
                Some(p)
            }
            Some(Frame::Map { path, key }) => match key.take() {
                Some(k) => {
                    let mut p = path.clone();
                    p.push(Seg::Key(k));
                    Some(p)
                }
                None => {
                    // This node is a key (complex keys never get here: they are skipped).
                    if let Some(k) = scalar_key {
                        let mut p = path.clone();
                        p.push(Seg::Key(k.to_string()));
                        self.index.lines.entry(p).or_insert(mark.line());
                        *key = Some(k.to_string());
                    }
                    None
                }
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.skipping > 0 {
            match ev {
                Event::MappingStart(..) | Event::SequenceStart(..) => self.skipping += 1,
                Event::MappingEnd | Event::SequenceEnd => {
                    self.skipping -= 1;
                    if self.skipping == 0 {
                        // The complex key is done; its value follows under a key nobody can name.
                        if let Some(Frame::Map { key, .. }) = self.stack.last_mut() {
                            *key = Some("\u{0}".into());
                        }
                    }
                }
                _ => {}
            }
            return;
        }
        match ev {
            Event::Scalar(value, style, ..) => {
                let is_key = matches!(self.stack.last(), Some(Frame::Map { key: None, .. }));
                if let Some(p) = self.node_start(mark, is_key.then_some(value.as_str())) {
                    let literal_block = style == TScalarStyle::Literal;
                    self.index.values.insert(p.clone(), ValuePos { line: mark.line(), literal_block });
                    self.index.scalars.insert(p, value);
                }
            }
            Event::Alias(_) => {
                let is_key = matches!(self.stack.last(), Some(Frame::Map { key: None, .. }));
                let _ = self.node_start(mark, is_key.then_some("\u{0}alias"));
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let is_key = matches!(self.stack.last(), Some(Frame::Map { key: None, .. }));
                if is_key {
                    self.skipping = 1;
                    return;
                }
                let path = self.node_start(mark, None).unwrap_or_default();
                self.index.lines.entry(path.clone()).or_insert(mark.line());
                self.stack.push(match ev {
                    Event::MappingStart(..) => Frame::Map { path, key: None },
                    _ => Frame::Seq { path, next: 0 },
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

impl PosIndex {
    /// Indexes the first document of `text`.
    pub fn build(text: &str) -> PosIndex {
        let mut b = Builder { index: PosIndex::default(), stack: vec![], skipping: 0 };
        let mut parser = Parser::new_from_str(text);
        match parser.load(&mut b, false) {
            Ok(()) => b.index,
            Err(_) => PosIndex::default(),
        }
    }

    /// The line (1-based) of the entry at `path`: a key's line, or a sequence item's first line.
    pub fn line(&self, path: &[Seg]) -> Option<usize> {
        self.lines.get(path).copied()
    }

    /// Where the scalar value at `path` starts.
    pub fn value(&self, path: &[Seg]) -> Option<ValuePos> {
        self.values.get(path).copied()
    }

    /// The text of the scalar at `path`.
    pub fn scalar(&self, path: &[Seg]) -> Option<&str> {
        self.scalars.get(path).map(String::as_str)
    }

    /// The line of `path`, or of its nearest ancestor that has one, or 1.
    pub fn nearest_line(&self, path: &[Seg]) -> usize {
        (0..=path.len()).rev().find_map(|n| self.line(&path[..n])).unwrap_or(1)
    }

    /// The deepest sequence item under `prefix` whose line is at or before `line`: which group or rule a
    /// serde error at `line` belongs to. Returns the item index.
    pub fn item_at_line(&self, prefix: &[Seg], line: usize) -> Option<usize> {
        let mut best: Option<(usize, usize)> = None;
        for (path, l) in &self.lines {
            if path.len() == prefix.len() + 1 && path.starts_with(prefix) && *l <= line {
                if let Seg::Index(i) = path[prefix.len()] {
                    if best.is_none_or(|(bl, _)| *l > bl) {
                        best = Some((*l, i));
                    }
                }
            }
        }
        best.map(|(_, i)| i)
    }
}

/// A key segment.
pub fn key(k: &str) -> Seg {
    Seg::Key(k.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(segs: &[&str]) -> Vec<Seg> {
        segs.iter().map(|s| s.parse::<usize>().map(Seg::Index).unwrap_or_else(|_| key(s))).collect()
    }

    const DOC: &str = "\
# comment
groups:
  - name: api
    rules:
      - alert: A
        expr: |
          SELECT x
          FROM y
        for: 5m
      - record: r
        expr: SELECT 1
  - name: db
    rules: [{alert: B, expr: q}]
";

    #[test]
    fn lines_of_keys_and_items() {
        let ix = PosIndex::build(DOC);
        assert_eq!(ix.line(&p(&["groups"])), Some(2));
        assert_eq!(ix.line(&p(&["groups", "0"])), Some(3));
        assert_eq!(ix.line(&p(&["groups", "0", "name"])), Some(3));
        assert_eq!(ix.line(&p(&["groups", "0", "rules", "0"])), Some(5));
        assert_eq!(ix.line(&p(&["groups", "0", "rules", "0", "expr"])), Some(6));
        assert_eq!(ix.line(&p(&["groups", "0", "rules", "0", "for"])), Some(9));
        assert_eq!(ix.line(&p(&["groups", "0", "rules", "1", "record"])), Some(10));
        assert_eq!(ix.line(&p(&["groups", "1", "rules", "0", "expr"])), Some(13));
        assert_eq!(
            ix.value(&p(&["groups", "0", "rules", "0", "expr"])),
            Some(ValuePos { line: 7, literal_block: true })
        );
        assert_eq!(
            ix.value(&p(&["groups", "0", "rules", "1", "expr"])),
            Some(ValuePos { line: 11, literal_block: false })
        );
        assert_eq!(ix.scalar(&p(&["groups", "1", "rules", "0", "alert"])), Some("B"));
        assert_eq!(ix.scalar(&p(&["groups", "0", "rules", "0", "expr"])), Some("SELECT x\nFROM y\n"));
        assert_eq!(ix.nearest_line(&p(&["groups", "0", "rules", "1", "labels", "x"])), 10);
        assert_eq!(ix.item_at_line(&p(&["groups"]), 11), Some(0));
        assert_eq!(ix.item_at_line(&p(&["groups"]), 12), Some(1));
        assert_eq!(ix.item_at_line(&p(&["groups", "0", "rules"]), 9), Some(0));
        assert_eq!(ix.item_at_line(&p(&["groups"]), 1), None);
    }

    #[test]
    fn complex_keys_and_aliases_do_not_derail_the_walk() {
        let ix = PosIndex::build("a: &x 1\n? [k]\n: v\nb: *x\nc: 3\n");
        assert_eq!(ix.line(&p(&["a"])), Some(1));
        assert_eq!(ix.line(&p(&["b"])), Some(4));
        assert_eq!(ix.line(&p(&["c"])), Some(5));
    }

    #[test]
    fn bad_yaml_gives_an_empty_index() {
        let ix = PosIndex::build("a: [\n");
        assert_eq!(ix.line(&p(&["a"])), None);
        assert_eq!(ix.nearest_line(&p(&["a"])), 1);
    }
}
