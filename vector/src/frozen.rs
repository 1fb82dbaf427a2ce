//! The search form of an HNSW graph: every layer as CSR neighbour lists over
//! dense node numbers and all vectors in one contiguous block, so a search walks
//! arrays instead of chasing one heap object per neighbour (DEPENDENCIES.md,
//! "hnsw_rs"). Scratch state (visited marks, heaps) is pooled and reused.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::sync::Mutex;

use crate::distance::{normalize, prefetch, L2Squared};
use crate::error::{Error, Result};

/// Most results one search may ask for.
pub const MAX_K: usize = 10_000;

/// How vectors are compared. The code is stored in sidecars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Cosine similarity: vectors and queries are L2-normalised, the graph is
    /// searched by squared L2 distance (same ranking) and the score is the cosine.
    Cosine,
}

impl Metric {
    pub(crate) fn code(self) -> u8 {
        match self {
            Metric::Cosine => 1,
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Metric::Cosine),
            _ => None,
        }
    }

    /// The user-facing score of a squared L2 distance between unit vectors.
    fn score(self, distance: f32) -> f32 {
        match self {
            Metric::Cosine => 1.0 - distance / 2.0,
        }
    }
}

/// The parameters an index was built with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexParams {
    pub dims: usize,
    pub metric: Metric,
    /// Links per node on upper layers (twice that on layer 0).
    pub m: usize,
    pub ef_construction: usize,
}

/// Neighbour lists of a set of nodes: node `i`'s list is
/// `neighbours[offsets[i]..offsets[i + 1]]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Csr {
    pub(crate) offsets: Vec<u32>,
    pub(crate) neighbours: Vec<u32>,
}

impl Csr {
    pub(crate) fn from_lists(lists: impl IntoIterator<Item = Vec<u32>>) -> Result<Self> {
        let mut csr = Csr {
            offsets: vec![0],
            neighbours: Vec::new(),
        };
        for list in lists {
            csr.neighbours.extend_from_slice(&list);
            let end = u32::try_from(csr.neighbours.len()).map_err(|_| {
                Error::InvalidInput("more than 4 billion links in one layer".to_string())
            })?;
            csr.offsets.push(end);
        }
        Ok(csr)
    }

    #[inline]
    fn list(&self, i: usize) -> &[u32] {
        &self.neighbours[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }

    fn check(
        &self,
        layer: usize,
        nodes: usize,
        node_count: usize,
    ) -> std::result::Result<(), String> {
        if self.offsets.len() != nodes + 1 || self.offsets.first() != Some(&0) {
            return Err(format!(
                "layer {layer}: offsets do not cover its {nodes} nodes"
            ));
        }
        if self.offsets.windows(2).any(|w| w[0] > w[1])
            || self.offsets.last().map(|&end| end as usize) != Some(self.neighbours.len())
        {
            return Err(format!(
                "layer {layer}: offsets are not increasing to the link count"
            ));
        }
        if self.neighbours.iter().any(|&n| n as usize >= node_count) {
            return Err(format!("layer {layer}: a link points past the last node"));
        }
        Ok(())
    }
}

/// One layer above the base: the (sorted) nodes on it and their links.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct UpperLayer {
    pub(crate) nodes: Vec<u32>,
    pub(crate) links: Csr,
}

impl UpperLayer {
    fn neighbours_of(&self, node: u32) -> &[u32] {
        match self.nodes.binary_search(&node) {
            Ok(i) => self.links.list(i),
            Err(_) => &[],
        }
    }
}

/// The arrays a frozen index consists of; what the builder and the sidecar reader produce.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Parts {
    pub(crate) params: IndexParams,
    pub(crate) doc_ids: Vec<u64>,
    /// `doc_ids.len() * params.dims` values, node `i` at `i * dims`.
    pub(crate) vectors: Vec<f32>,
    pub(crate) entry_point: u32,
    pub(crate) base: Csr,
    /// Layer 1 upwards.
    pub(crate) upper: Vec<UpperLayer>,
}

impl Parts {
    /// Every invariant search relies on, so a bad file cannot make it panic.
    pub(crate) fn check(&self) -> std::result::Result<(), String> {
        let n = self.doc_ids.len();
        if self.params.dims == 0 {
            return Err("zero dimensions".to_string());
        }
        if n == 0 {
            return Err("no vectors".to_string());
        }
        if Some(self.vectors.len()) != n.checked_mul(self.params.dims) {
            return Err(format!(
                "{} vector values for {n} vectors of {} dimensions",
                self.vectors.len(),
                self.params.dims
            ));
        }
        if self.entry_point as usize >= n {
            return Err("entry point past the last node".to_string());
        }
        self.base.check(0, n, n)?;
        for (i, layer) in self.upper.iter().enumerate() {
            if layer.nodes.windows(2).any(|w| w[0] >= w[1])
                || layer.nodes.last().is_some_and(|&last| last as usize >= n)
            {
                return Err(format!(
                    "layer {}: node list not sorted or out of range",
                    i + 1
                ));
            }
            layer.links.check(i + 1, layer.nodes.len(), n)?;
        }
        if let Some(top) = self.upper.last() {
            if top.nodes.binary_search(&self.entry_point).is_err() {
                return Err("entry point is not on the top layer".to_string());
            }
        }
        Ok(())
    }
}

/// A read-only HNSW index laid out for fast search. Safe to share between threads.
#[derive(Debug)]
pub struct FrozenHnsw {
    parts: Parts,
    distance: L2Squared,
    scratch: Mutex<Vec<Scratch>>,
}

/// A candidate or result: a node and its distance to the query.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scored {
    pub(crate) distance: f32,
    pub(crate) node: u32,
}

impl PartialEq for Scored {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Scored {}
impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        self.distance
            .total_cmp(&other.distance)
            .then(self.node.cmp(&other.node))
    }
}

/// Per-search state kept between searches: visited marks by epoch (cleared by
/// bumping the epoch, not by writing the array), both heaps and the query copy.
#[derive(Debug)]
pub(crate) struct Scratch {
    visited: Vec<u16>,
    epoch: u16,
    pub(crate) candidates: BinaryHeap<Reverse<Scored>>,
    pub(crate) results: BinaryHeap<Scored>,
    query: Vec<f32>,
}

impl Scratch {
    pub(crate) fn new(nodes: usize) -> Self {
        Self {
            visited: vec![0; nodes],
            epoch: 0,
            candidates: BinaryHeap::new(),
            results: BinaryHeap::new(),
            query: Vec::new(),
        }
    }

    pub(crate) fn next_epoch(&mut self) {
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.visited.fill(0);
            self.epoch = 1;
        }
        self.candidates.clear();
        self.results.clear();
    }

    /// Marks `node` visited; true if it was not before.
    #[inline]
    pub(crate) fn visit(&mut self, node: u32) -> bool {
        let mark = &mut self.visited[node as usize];
        let fresh = *mark != self.epoch;
        *mark = self.epoch;
        fresh
    }
}

/// Bytes of a vector worth prefetching before its distance is computed; the
/// hardware prefetcher streams the rest once the first lines are touched.
pub(crate) const PREFETCH_BYTES: usize = 256;

impl FrozenHnsw {
    pub(crate) fn from_parts(parts: Parts) -> std::result::Result<Self, String> {
        parts.check()?;
        Ok(Self {
            parts,
            distance: L2Squared::detect(),
            scratch: Mutex::new(Vec::new()),
        })
    }

    pub(crate) fn parts(&self) -> &Parts {
        &self.parts
    }

    pub fn params(&self) -> IndexParams {
        self.parts.params
    }

    pub fn len(&self) -> usize {
        self.parts.doc_ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.parts.doc_ids.is_empty()
    }

    /// Layers including the base layer.
    pub fn layers(&self) -> usize {
        self.parts.upper.len() + 1
    }

    /// Bytes held by the graph links (all layers), not counting the vectors.
    pub fn graph_bytes(&self) -> usize {
        let csr_bytes = |c: &Csr| (c.offsets.len() + c.neighbours.len()) * 4;
        csr_bytes(&self.parts.base)
            + self
                .parts
                .upper
                .iter()
                .map(|l| l.nodes.len() * 4 + csr_bytes(&l.links))
                .sum::<usize>()
    }

    /// Bytes held by the vectors and doc ids.
    pub fn vector_bytes(&self) -> usize {
        self.parts.vectors.len() * 4 + self.parts.doc_ids.len() * 8
    }

    #[inline]
    fn vector(&self, node: u32) -> &[f32] {
        let dims = self.parts.params.dims;
        let start = node as usize * dims;
        &self.parts.vectors[start..start + dims]
    }

    /// The `k` nearest vectors to `query` as `(doc_id, score)`, best first.
    /// `ef` (raised to `k` if lower) trades speed for recall.
    pub fn search(&self, query: &[f32], k: usize, ef: usize) -> Result<Vec<(u64, f32)>> {
        self.search_with(query, k, ef, None::<fn(u64) -> bool>)
    }

    /// Like [`search`](Self::search) but only doc ids for which `accept` is true
    /// are returned. When at least `k` accepted vectors exist, `k` are returned:
    /// if the graph walk finds fewer, the accepted vectors are scanned exactly.
    pub fn search_filtered(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        accept: impl Fn(u64) -> bool,
    ) -> Result<Vec<(u64, f32)>> {
        self.search_with(query, k, ef, Some(accept))
    }

    /// Exact nearest neighbours by scanning every vector: the reference for recall.
    pub fn exact_search(
        &self,
        query: &[f32],
        k: usize,
        accept: impl Fn(u64) -> bool,
    ) -> Result<Vec<(u64, f32)>> {
        self.with_scratch(query, k, |scratch| {
            self.scan_exact(scratch, k, &accept);
            self.drain_results(scratch, k)
        })
    }

    fn search_with<F: Fn(u64) -> bool>(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        accept: Option<F>,
    ) -> Result<Vec<(u64, f32)>> {
        self.with_scratch(query, k, |scratch| {
            let entry = self.descend_upper_layers(&scratch.query);
            match &accept {
                None => self.search_base_layer(scratch, entry, ef.max(k), |_| true, false),
                Some(accept) => {
                    self.search_base_layer(scratch, entry, ef.max(k), accept, true);
                    if scratch.results.len() < k {
                        scratch.next_epoch();
                        self.scan_exact(scratch, k, accept);
                    }
                }
            }
            self.drain_results(scratch, k)
        })
    }

    /// Validates the request, prepares pooled scratch with the (normalised) query and runs `f`.
    fn with_scratch(
        &self,
        query: &[f32],
        k: usize,
        f: impl FnOnce(&mut Scratch) -> Vec<(u64, f32)>,
    ) -> Result<Vec<(u64, f32)>> {
        let dims = self.parts.params.dims;
        if query.len() != dims {
            return Err(Error::InvalidInput(format!(
                "query has {} dimensions, the index has {dims}",
                query.len()
            )));
        }
        if k == 0 || k > MAX_K {
            return Err(Error::InvalidInput(format!(
                "k = {k}: ask for 1 to {MAX_K} results"
            )));
        }
        let pooled = self.scratch.lock().ok().and_then(|mut pool| pool.pop());
        let mut scratch = pooled.unwrap_or_else(|| Scratch::new(self.len()));
        scratch.next_epoch();
        scratch.query.clear();
        scratch.query.extend_from_slice(query);
        let normalized = match self.parts.params.metric {
            Metric::Cosine => normalize(&mut scratch.query),
        };
        let outcome = if normalized {
            Ok(f(&mut scratch))
        } else {
            Err(Error::InvalidInput(
                "query vector is zero or not finite: it has no direction to compare".to_string(),
            ))
        };
        if let Ok(mut pool) = self.scratch.lock() {
            pool.push(scratch);
        }
        outcome
    }

    /// Greedy walk from the entry point down to layer 1; returns the start node for layer 0.
    fn descend_upper_layers(&self, query: &[f32]) -> Scored {
        let mut best = Scored {
            node: self.parts.entry_point,
            distance: self
                .distance
                .eval(query, self.vector(self.parts.entry_point)),
        };
        for layer in self.parts.upper.iter().rev() {
            let mut improved = true;
            while improved {
                improved = false;
                for &next in layer.neighbours_of(best.node) {
                    let distance = self.distance.eval(query, self.vector(next));
                    if distance < best.distance {
                        best = Scored {
                            node: next,
                            distance,
                        };
                        improved = true;
                    }
                }
            }
        }
        best
    }

    /// Best-first search of layer 0 keeping the `ef` closest accepted nodes in
    /// `scratch.results`. With a filter, the walk goes on through rejected nodes
    /// until `ef` accepted ones are found (hnswlib's rule).
    fn search_base_layer(
        &self,
        scratch: &mut Scratch,
        entry: Scored,
        ef: usize,
        accept: impl Fn(u64) -> bool,
        filtered: bool,
    ) {
        let doc_ids = &self.parts.doc_ids;
        scratch.visit(entry.node);
        scratch.candidates.push(Reverse(entry));
        if accept(doc_ids[entry.node as usize]) {
            scratch.results.push(entry);
        }
        let mut bound = worst_kept(&scratch.results, ef, filtered);
        while let Some(Reverse(current)) = scratch.candidates.pop() {
            if current.distance > bound {
                break;
            }
            let links = self.parts.base.list(current.node as usize);
            if let Some(&first) = links.first() {
                prefetch(self.vector(first).as_ptr(), PREFETCH_BYTES);
            }
            for (i, &next) in links.iter().enumerate() {
                if let Some(&after) = links.get(i + 1) {
                    prefetch(self.vector(after).as_ptr(), PREFETCH_BYTES);
                }
                if !scratch.visit(next) {
                    continue;
                }
                let distance = self.distance.eval(&scratch.query, self.vector(next));
                if scratch.results.len() < ef || distance < bound {
                    let scored = Scored {
                        node: next,
                        distance,
                    };
                    scratch.candidates.push(Reverse(scored));
                    if accept(doc_ids[next as usize]) {
                        scratch.results.push(scored);
                        if scratch.results.len() > ef {
                            scratch.results.pop();
                        }
                    }
                    bound = worst_kept(&scratch.results, ef, filtered);
                }
            }
        }
    }

    /// Scans every vector, keeping the `k` closest accepted ones in `scratch.results`.
    fn scan_exact(&self, scratch: &mut Scratch, k: usize, accept: impl Fn(u64) -> bool) {
        for (node, &doc_id) in self.parts.doc_ids.iter().enumerate() {
            if !accept(doc_id) {
                continue;
            }
            let node = node as u32;
            let distance = self.distance.eval(&scratch.query, self.vector(node));
            if scratch.results.len() < k {
                scratch.results.push(Scored { node, distance });
            } else if scratch
                .results
                .peek()
                .is_some_and(|worst| distance < worst.distance)
            {
                scratch.results.pop();
                scratch.results.push(Scored { node, distance });
            }
        }
    }

    /// The `k` best of `scratch.results` as `(doc_id, score)`, best first.
    fn drain_results(&self, scratch: &mut Scratch, k: usize) -> Vec<(u64, f32)> {
        while scratch.results.len() > k {
            scratch.results.pop();
        }
        let metric = self.parts.params.metric;
        let mut best: Vec<Scored> = scratch.results.drain().collect();
        best.sort_unstable();
        best.into_iter()
            .map(|s| {
                (
                    self.parts.doc_ids[s.node as usize],
                    metric.score(s.distance),
                )
            })
            .collect()
    }
}

/// The distance a new node must beat to enter the results: the worst kept one
/// once `ef` are kept. Unfiltered, a partial result set also bounds the walk
/// (hnswlib stops there too); filtered, the walk continues until `ef` accepted.
#[inline]
fn worst_kept(results: &BinaryHeap<Scored>, ef: usize, filtered: bool) -> f32 {
    match results.peek() {
        Some(worst) if results.len() >= ef || !filtered => worst.distance,
        _ => f32::INFINITY,
    }
}
