//! Parallel HNSW insert, following hnswlib's `addPoint`: a seeded random level
//! per node, greedy descent through the layers above it, a best-first search
//! with `ef_construction` on each of its layers, links chosen with the diversity
//! heuristic (`getNeighborsByHeuristic2`) and made both ways, a neighbour's full
//! list trimmed with the same heuristic. Trimming by distance alone (what
//! hnsw_rs did) drops the long links a search needs to leave a cluster.
//!
//! Concurrency: one lock per node over its neighbour lists, never two held at
//! once; the entry point and top level under one more lock, held through the
//! insert of a node that raises the top level (hnswlib's `global`).

use std::cmp::Reverse;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use rayon::ThreadPool;

use crate::distance::{prefetch, L2Squared};
use crate::error::{Error, Result};
use crate::frozen::{Csr, Scored, Scratch, UpperLayer, PREFETCH_BYTES};
use crate::rng::Rng;

/// Highest layer a node is drawn on. At M = 16 a node reaches layer 8 with
/// probability 16⁻⁸, so the cap only guards against a degenerate M.
const MAX_LEVEL: usize = 15;

/// The entry point of searches and inserts: a node on the top layer.
#[derive(Debug, Clone, Copy)]
struct Entry {
    node: u32,
    level: usize,
}

/// The layers of a built graph, in the form `Parts` stores them.
pub(crate) struct Layers {
    pub(crate) entry_point: u32,
    pub(crate) base: Csr,
    pub(crate) upper: Vec<UpperLayer>,
}

/// A graph under construction over `vectors` (row-major, unit length).
pub(crate) struct GraphBuilder<'a> {
    vectors: &'a [f32],
    dims: usize,
    m: usize,
    ef_construction: usize,
    levels: Vec<u8>,
    /// Per node: its neighbour lists, layer 0 first, up to its level.
    links: Vec<Mutex<Vec<Vec<u32>>>>,
    entry: Mutex<Option<Entry>>,
    distance: L2Squared,
}

/// One insert thread's reusable buffers.
struct Work {
    scratch: Scratch,
    links: Vec<u32>,
    found: Vec<Scored>,
    trim: Vec<Scored>,
}

/// A poisoned lock means another insert panicked; that panic already ends the
/// build when the pool re-raises it, so the lists are still safe to read here.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<'a> GraphBuilder<'a> {
    /// Draws every node's level up front from `seed` (hnswlib's `mult = 1/ln M`),
    /// so the levels do not depend on which thread inserts which node.
    pub(crate) fn new(
        vectors: &'a [f32],
        dims: usize,
        m: usize,
        ef_construction: usize,
        seed: u64,
    ) -> Self {
        let n = vectors.len() / dims;
        let mult = 1.0 / (m as f64).ln();
        let mut rng = Rng(seed);
        let levels: Vec<u8> = (0..n)
            .map(|_| ((-rng.unit().ln() * mult) as usize).min(MAX_LEVEL) as u8)
            .collect();
        let links = levels
            .iter()
            .map(|&level| {
                // One slot beyond the cap: a full list takes the new link before it is trimmed.
                let lists = (0..=usize::from(level))
                    .map(|layer| Vec::with_capacity(Self::cap(m, layer) + 1))
                    .collect();
                Mutex::new(lists)
            })
            .collect();
        Self {
            vectors,
            dims,
            m,
            ef_construction,
            levels,
            links,
            entry: Mutex::new(None),
            distance: L2Squared::detect(),
        }
    }

    /// Most links a node keeps on `layer`: 2·M on layer 0, M above.
    fn cap(m: usize, layer: usize) -> usize {
        if layer == 0 {
            2 * m
        } else {
            m
        }
    }

    #[inline]
    fn vector(&self, node: u32) -> &[f32] {
        let start = node as usize * self.dims;
        &self.vectors[start..start + self.dims]
    }

    #[inline]
    fn between(&self, a: u32, b: u32) -> f32 {
        self.distance.eval(self.vector(a), self.vector(b))
    }

    /// Inserts every node on `pool`'s threads. Each thread takes the next row
    /// from a shared counter, so rows go in about in order, as hnswlib's
    /// `ParallelFor` does, and one thread inserts them exactly in order.
    pub(crate) fn insert_all(&self, pool: &ThreadPool) {
        let n = self.levels.len();
        let next = AtomicUsize::new(0);
        pool.broadcast(|_| {
            let mut work = Work {
                scratch: Scratch::new(n),
                links: Vec::new(),
                found: Vec::new(),
                trim: Vec::new(),
            };
            loop {
                let row = next.fetch_add(1, Ordering::Relaxed);
                if row >= n {
                    break;
                }
                self.insert(row as u32, &mut work);
            }
        });
    }

    fn insert(&self, node: u32, work: &mut Work) {
        let level = usize::from(self.levels[node as usize]);
        let mut global = lock(&self.entry);
        let Some(entry) = *global else {
            *global = Some(Entry { node, level });
            return;
        };
        // Only one insert at a time may raise the top level and take over as entry point.
        let raising = (level > entry.level).then_some(global);
        let query = self.vector(node);
        let mut nearest = Scored {
            node: entry.node,
            distance: self.distance.eval(query, self.vector(entry.node)),
        };
        for layer in (level + 1..=entry.level).rev() {
            nearest = self.descend(query, nearest, layer, &mut work.links);
        }
        for layer in (0..=level.min(entry.level)).rev() {
            self.search_layer(node, nearest, layer, work);
            work.found.clear();
            work.found.extend(work.scratch.results.drain());
            work.found.sort_unstable();
            if let Some(&closest) = work.found.first() {
                nearest = closest;
            }
            self.select_diverse(&mut work.found, self.m);
            self.add_links(node, layer, &work.found, &mut work.trim);
            for &neighbour in &work.found {
                let back = Scored {
                    node,
                    distance: neighbour.distance,
                };
                self.add_links(neighbour.node, layer, &[back], &mut work.trim);
            }
        }
        if let Some(mut global) = raising {
            *global = Some(Entry { node, level });
        }
    }

    /// Copies `node`'s links on `layer` into `out` (the lock is held only for the copy).
    fn copy_links(&self, node: u32, layer: usize, out: &mut Vec<u32>) {
        out.clear();
        if let Some(list) = lock(&self.links[node as usize]).get(layer) {
            out.extend_from_slice(list);
        }
    }

    /// Greedy walk on `layer` to the node nearest `query` reachable from `from`.
    fn descend(
        &self,
        query: &[f32],
        mut best: Scored,
        layer: usize,
        links: &mut Vec<u32>,
    ) -> Scored {
        loop {
            let at = best.node;
            self.copy_links(at, layer, links);
            for &next in links.iter() {
                let distance = self.distance.eval(query, self.vector(next));
                if distance < best.distance {
                    best = Scored {
                        node: next,
                        distance,
                    };
                }
            }
            if best.node == at {
                return best;
            }
        }
    }

    /// hnswlib's `searchBaseLayer` on `layer`: leaves the `ef_construction`
    /// nearest nodes to `node` found from `entry` in `work.scratch.results`.
    fn search_layer(&self, node: u32, entry: Scored, layer: usize, work: &mut Work) {
        let scratch = &mut work.scratch;
        let ef = self.ef_construction;
        let query = self.vector(node);
        scratch.next_epoch();
        // Another insert may already have linked to this node: never link it to itself.
        scratch.visit(node);
        scratch.visit(entry.node);
        scratch.candidates.push(Reverse(entry));
        scratch.results.push(entry);
        let mut bound = entry.distance;
        while let Some(Reverse(current)) = scratch.candidates.pop() {
            if current.distance > bound && scratch.results.len() >= ef {
                break;
            }
            self.copy_links(current.node, layer, &mut work.links);
            if let Some(&first) = work.links.first() {
                prefetch(self.vector(first).as_ptr(), PREFETCH_BYTES);
            }
            for (i, &next) in work.links.iter().enumerate() {
                if let Some(&after) = work.links.get(i + 1) {
                    prefetch(self.vector(after).as_ptr(), PREFETCH_BYTES);
                }
                if !scratch.visit(next) {
                    continue;
                }
                let distance = self.distance.eval(query, self.vector(next));
                if scratch.results.len() < ef || distance < bound {
                    let scored = Scored {
                        node: next,
                        distance,
                    };
                    scratch.candidates.push(Reverse(scored));
                    scratch.results.push(scored);
                    if scratch.results.len() > ef {
                        scratch.results.pop();
                    }
                    if let Some(worst) = scratch.results.peek() {
                        bound = worst.distance;
                    }
                }
            }
        }
        scratch.candidates.clear();
    }

    /// hnswlib's `getNeighborsByHeuristic2`: from `candidates` (nearest first)
    /// keeps up to `m`, each only if no kept one is closer to it than the base
    /// node is. Fewer than `m` candidates are all kept.
    fn select_diverse(&self, candidates: &mut Vec<Scored>, m: usize) {
        if candidates.len() < m {
            return;
        }
        let mut kept = 0;
        for i in 0..candidates.len() {
            if kept == m {
                break;
            }
            let candidate = candidates[i];
            if candidates[..kept]
                .iter()
                .all(|k| self.between(k.node, candidate.node) >= candidate.distance)
            {
                candidates[kept] = candidate;
                kept += 1;
            }
        }
        candidates.truncate(kept);
    }

    /// Adds `new` (with their distances to `target`) to `target`'s list on
    /// `layer`; a list past its cap is re-selected with the heuristic.
    fn add_links(&self, target: u32, layer: usize, new: &[Scored], trim: &mut Vec<Scored>) {
        let cap = Self::cap(self.m, layer);
        let mut lists = lock(&self.links[target as usize]);
        let Some(list) = lists.get_mut(layer) else {
            return;
        };
        for link in new {
            if !list.contains(&link.node) {
                list.push(link.node);
            }
        }
        if list.len() <= cap {
            return;
        }
        trim.clear();
        trim.extend(list.iter().map(|&node| Scored {
            node,
            distance: self.between(target, node),
        }));
        trim.sort_unstable();
        self.select_diverse(trim, cap);
        list.clear();
        list.extend(trim.iter().map(|s| s.node));
    }

    /// The finished graph as CSR layers.
    pub(crate) fn into_layers(self) -> Result<Layers> {
        let entry = self
            .entry
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
            .ok_or_else(|| Error::Build("no vector was inserted".to_string()))?;
        let mut lists: Vec<Vec<Vec<u32>>> = self
            .links
            .into_iter()
            .map(|m| m.into_inner().unwrap_or_else(PoisonError::into_inner))
            .collect();
        let base = Csr::from_lists(lists.iter_mut().map(|l| std::mem::take(&mut l[0])))?;
        let upper = (1..=entry.level)
            .map(|layer| {
                let nodes: Vec<u32> = (0..lists.len())
                    .filter(|&row| usize::from(self.levels[row]) >= layer)
                    .map(|row| row as u32)
                    .collect();
                let links = Csr::from_lists(
                    nodes
                        .iter()
                        .map(|&row| std::mem::take(&mut lists[row as usize][layer])),
                )?;
                Ok(UpperLayer { nodes, links })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Layers {
            entry_point: entry.node,
            base,
            upper,
        })
    }
}
