//! Where each node of the plan sits in its file, so that a rule broken by a well-formed plan is
//! reported at a line just as a parse error is.
//!
//! `serde_yaml_ng` reports a location for its own errors but gives `Deserialize` impls no spans,
//! so the text is walked a second time with `saphyr-parser`'s event stream, which carries a
//! position for every node.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser};

/// The 1-based line of every node, keyed by its dotted path (`stages.2.steps.0`).
#[derive(Clone, Debug, Default)]
pub struct SourceMap {
    lines: HashMap<String, usize>,
}

/// Where the walk is inside a collection.
enum Frame {
    /// Inside a mapping: `Some(key)` while the key's value is awaited.
    Mapping {
        path: String,
        pending_key: Option<String>,
    },
    /// Inside a sequence, with the index of the next item.
    Sequence { path: String, next: usize },
}

impl SourceMap {
    /// Maps `text`. Text the parser rejects maps what came before the error, which is as good as
    /// it gets: `serde_yaml_ng` will already have reported such text with its own location.
    pub fn new(text: &str) -> SourceMap {
        let mut map = SourceMap::default();
        let mut stack: Vec<Frame> = Vec::new();
        for event in Parser::new_from_str(text) {
            let Ok((event, span)) = event else { break };
            let line = span.start.line();
            match event {
                Event::Scalar(value, ..) => {
                    map.enter(&mut stack, line, Some(&value));
                }
                Event::Alias(_) => {
                    map.enter(&mut stack, line, None);
                }
                Event::MappingStart(..) => {
                    let path = map
                        .enter(&mut stack, line, None)
                        .unwrap_or_else(complex_key);
                    stack.push(Frame::Mapping {
                        path,
                        pending_key: None,
                    });
                }
                Event::SequenceStart(..) => {
                    let path = map
                        .enter(&mut stack, line, None)
                        .unwrap_or_else(complex_key);
                    stack.push(Frame::Sequence { path, next: 0 });
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    stack.pop();
                }
                _ => {}
            }
        }
        map
    }

    /// The line of the node at `path`, or of its closest mapped ancestor.
    pub fn line(&self, path: &str) -> Option<usize> {
        let mut path = path;
        loop {
            if let Some(line) = self.lines.get(path) {
                return Some(*line);
            }
            path = &path[..path.rfind('.')?];
        }
    }

    /// Records a node that starts at `line` and returns its path, or `None` when the node is a
    /// mapping key (whose line is recorded as the line of the entry it starts).
    fn enter(&mut self, stack: &mut [Frame], line: usize, scalar: Option<&str>) -> Option<String> {
        match stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Mapping { path, pending_key }) => match pending_key.take() {
                Some(key) => Some(join(path, &key)),
                None => {
                    // A complex (non-scalar) key cannot be named by a path; its value goes unmapped.
                    let key = scalar.unwrap_or("?").to_owned();
                    self.lines.entry(join(path, &key)).or_insert(line);
                    *pending_key = Some(key);
                    None
                }
            },
            Some(Frame::Sequence { path, next }) => {
                let item = join(path, &next.to_string());
                *next += 1;
                self.lines.entry(item.clone()).or_insert(line);
                Some(item)
            }
        }
    }
}

/// The path of what lies inside a collection used as a mapping key, which no plan path names.
fn complex_key() -> String {
    "?".to_owned()
}

fn join(parent: &str, segment: &str) -> String {
    if parent.is_empty() {
        segment.to_owned()
    } else {
        format!("{parent}.{segment}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAN: &str = "\
name: x
stages:
  - id: a
    steps:
      - wait: {duration: 1h}
      - canary:
          weight: 1
  - {id: b, steps: [{wait: {duration: 1h}}]}
";

    #[test]
    fn maps_block_and_flow_nodes_to_their_lines() {
        let map = SourceMap::new(PLAN);
        assert_eq!(map.line("name"), Some(1));
        assert_eq!(map.line("stages.0"), Some(3));
        assert_eq!(map.line("stages.0.steps.1"), Some(6));
        assert_eq!(map.line("stages.0.steps.1.canary.weight"), Some(7));
        assert_eq!(map.line("stages.1.steps.0"), Some(8));
    }

    #[test]
    fn falls_back_to_the_closest_mapped_ancestor() {
        let map = SourceMap::new(PLAN);
        assert_eq!(map.line("stages.0.needs"), Some(3));
        assert_eq!(map.line("nowhere"), None);
    }
}
