//! A byte trie over path prefixes whose nodes carry candidate matchers.
//!
//! Walking a request path from the root visits exactly the nodes whose key is a prefix of the
//! path, so only matchers whose plain prefix (or regex literal prefix) fits the path are ever
//! evaluated.

/// A candidate stored in a trie node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Entry {
    /// Matcher index, which is also its rank (0 = highest priority).
    pub(crate) m: u32,
    /// Destination port the host pattern requires, if it carries one.
    pub(crate) port: Option<u16>,
}

#[derive(Debug, Default)]
pub(crate) struct Node {
    /// Sorted child bytes, parallel to `children`.
    keys: Vec<u8>,
    children: Vec<u32>,
    /// Candidates whose key ends at this node, sorted by rank (best first).
    pub(crate) entries: Vec<Entry>,
}

/// Byte trie; node 0 is the root (empty key).
#[derive(Debug)]
pub(crate) struct Trie {
    nodes: Vec<Node>,
}

impl Default for Trie {
    fn default() -> Self {
        Self {
            nodes: vec![Node::default()],
        }
    }
}

impl Trie {
    /// Adds `entry` under `key`.
    pub(crate) fn insert(&mut self, key: &[u8], entry: Entry) {
        let mut cur = 0usize;
        for &b in key {
            let next_id = self.nodes.len();
            let node = &mut self.nodes[cur];
            cur = match node.keys.binary_search(&b) {
                Ok(i) => node.children[i] as usize,
                Err(i) => {
                    node.keys.insert(i, b);
                    // Node counts are bounded by total key bytes, far below u32::MAX in practice.
                    node.children
                        .insert(i, u32::try_from(next_id).unwrap_or(u32::MAX));
                    self.nodes.push(Node::default());
                    next_id
                }
            };
        }
        self.nodes[cur].entries.push(entry);
    }

    /// Sorts every node's candidates by rank and drops duplicates; call once after inserting.
    pub(crate) fn finish(&mut self) {
        for n in &mut self.nodes {
            n.entries.sort_unstable();
            n.entries.dedup();
            n.entries.shrink_to_fit();
            n.keys.shrink_to_fit();
            n.children.shrink_to_fit();
        }
        self.nodes.shrink_to_fit();
    }

    /// Calls `visit` with the candidate list of every node whose key is a prefix of `path`,
    /// shortest key first, skipping empty lists.
    #[inline]
    pub(crate) fn walk<'t>(&'t self, path: &[u8], mut visit: impl FnMut(&'t [Entry])) {
        let Some(mut node) = self.nodes.first() else {
            return;
        };
        if !node.entries.is_empty() {
            visit(&node.entries);
        }
        for b in path {
            let Ok(i) = node.keys.binary_search(b) else {
                return;
            };
            let Some(next) = self.nodes.get(node.children[i] as usize) else {
                return;
            };
            node = next;
            if !node.entries.is_empty() {
                visit(&node.entries);
            }
        }
    }
}
