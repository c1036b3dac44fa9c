//! Positions of config paths in the YAML text, so that `varco check` can point at the line of
//! a semantic error (`tenants[1].routes[0].to.upstream (line 42, column 9)`).

use std::collections::HashMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

#[derive(Default)]
struct Events(Vec<(Event, Marker)>);

impl MarkedEventReceiver for Events {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        self.0.push((ev, mark));
    }
}

/// Path (as in [`crate::ConfigIssue::path`]) to 1-based (line, column) of its key or item
/// (yaml-rust2's columns are 0-based).
pub struct Positions(HashMap<String, (usize, usize)>);

impl Positions {
    /// Empty if the text does not parse (then the parser's own error has the position).
    pub fn of(text: &str) -> Self {
        let mut ev = Events::default();
        let mut map = HashMap::new();
        if Parser::new_from_str(text).load(&mut ev, false).is_ok() {
            let mut i = 0;
            // Skip StreamStart and DocumentStart.
            while i < ev.0.len() && !matches!(ev.0[i].0, Event::MappingStart(..) | Event::SequenceStart(..)) {
                i += 1;
            }
            walk(&ev.0, &mut i, String::new(), &mut map);
        }
        Self(map)
    }

    /// The position of the path, or of its closest ancestor present in the file.
    pub fn find(&self, path: &str) -> Option<(usize, usize)> {
        let mut p = path;
        loop {
            if let Some(&pos) = self.0.get(p) {
                return Some(pos);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }
}

/// Walks the node starting at `events[*i]`, recording the position of every child path.
fn walk(events: &[(Event, Marker)], i: &mut usize, path: String, map: &mut HashMap<String, (usize, usize)>) {
    let Some((ev, _)) = events.get(*i) else { return };
    match ev {
        Event::MappingStart(..) => {
            *i += 1;
            while let Some((ev, mark)) = events.get(*i) {
                match ev {
                    Event::MappingEnd => {
                        *i += 1;
                        return;
                    }
                    Event::Scalar(key, ..) => {
                        let child = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                        map.entry(child.clone()).or_insert((mark.line(), mark.col() + 1));
                        *i += 1;
                        walk(events, i, child, map);
                    }
                    _ => {
                        // A complex key: skip key and value.
                        walk(events, i, String::new(), &mut HashMap::new());
                        walk(events, i, String::new(), &mut HashMap::new());
                    }
                }
            }
        }
        Event::SequenceStart(..) => {
            *i += 1;
            let mut n = 0;
            while let Some((ev, mark)) = events.get(*i) {
                if matches!(ev, Event::SequenceEnd) {
                    *i += 1;
                    return;
                }
                let child = format!("{path}[{n}]");
                map.entry(child.clone()).or_insert((mark.line(), mark.col() + 1));
                walk(events, i, child, map);
                n += 1;
            }
        }
        _ => *i += 1,
    }
}

#[cfg(test)]
mod tests {
    use super::Positions;

    #[test]
    fn finds_keys_items_and_ancestors() {
        let text = "listeners:\n  - name: a\n    address: x\ntenants:\n  - id: c_x\n    routes:\n      - {name: r, to: {upstream: u}}\n";
        let p = Positions::of(text);
        assert_eq!(p.find("listeners[0].address").map(|l| l.0), Some(3));
        assert_eq!(p.find("tenants[0].routes[0].to.upstream").map(|l| l.0), Some(7));
        assert_eq!(p.find("tenants[0].hosts[3]").map(|l| l.0), Some(5), "falls back to the tenant");
        assert_eq!(p.find("admin.token"), None);
    }
}
