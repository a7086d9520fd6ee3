//! Which edges of a class graph to look at next, AutoNEB-style: straight lines first
//! (cheap, batched), the NEB only where the spanning structure still needs a path. Pure
//! bookkeeping over node indices and distances, so every strategy is tested without a
//! network; the driver in `mod.rs` evaluates what the plan asks for and records it here.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;

/// How `mep graph` chooses the pairs it examines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// `all` up to [`AUTO_ALL_NODES`] nodes, `disconnected` beyond.
    Auto,
    /// Every pair: its line, and the NEB on each line that leaves the class (in order of
    /// distance, within the search budget). The complete graph, for small sets.
    All,
    /// Lines along the Euclidean minimum spanning tree first, then, while the class is in
    /// more than one component, the shortest lines between components and the NEB on the
    /// shortest link whose line failed (PyTorch-AutoNEB's `disconnected`). Stops when the
    /// class is one component.
    Disconnected,
    /// `disconnected`, then, with the budget left, lowers the minimum spanning tree of
    /// barriers: the highest tree edge that is not a line is searched, or bypassed by the
    /// shortest unexamined pair across it (PyTorch-AutoNEB's `mst`).
    Mst,
}

/// Nodes up to which `auto` examines every pair.
pub const AUTO_ALL_NODES: usize = 10;

impl Strategy {
    /// The strategy `auto` means for `n` nodes; the others are themselves.
    pub fn resolve(self, n: usize) -> Strategy {
        match self {
            Strategy::Auto if n <= AUTO_ALL_NODES => Strategy::All,
            Strategy::Auto => Strategy::Disconnected,
            s => s,
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Strategy::Auto => "auto",
            Strategy::All => "all",
            Strategy::Disconnected => "disconnected",
            Strategy::Mst => "mst",
        })
    }
}

impl FromStr for Strategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "auto" => Ok(Strategy::Auto),
            "all" => Ok(Strategy::All),
            "disconnected" => Ok(Strategy::Disconnected),
            "mst" => Ok(Strategy::Mst),
            other => Err(format!("`{other}` is not a strategy (auto, all, disconnected, mst)")),
        }
    }
}

/// What is known of one edge.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Known {
    /// The line's verdict (true: every dense point in the class) and its largest loss.
    pub line: Option<(bool, f64)>,
    /// The NEB's verdict (true: a path found) and its path's largest loss.
    pub search: Option<(bool, f64)>,
}

impl Known {
    /// Whether some path (the line or the NEB's) keeps the class.
    pub fn joined(&self) -> bool {
        self.line.is_some_and(|l| l.0) || self.search.is_some_and(|s| s.0)
    }

    /// The lowest largest loss of a path known between the two nodes: the barrier.
    pub fn barrier(&self) -> Option<f64> {
        let l = self.line.map(|l| l.1);
        let s = self.search.map(|s| s.1);
        match (l, s) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Union–find over node indices, smallest index as the representative so that component
/// lists come out the same on every run.
#[derive(Clone, Debug)]
pub struct Components {
    parent: Vec<usize>,
}

impl Components {
    /// `n` singletons.
    pub fn new(n: usize) -> Self {
        Components {
            parent: (0..n).collect(),
        }
    }

    /// The representative of `a`'s component.
    pub fn find(&self, mut a: usize) -> usize {
        while self.parent[a] != a {
            a = self.parent[a];
        }
        a
    }

    /// Joins the components of `a` and `b`; whether they were apart.
    pub fn union(&mut self, a: usize, b: usize) -> bool {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra == rb {
            return false;
        }
        let (lo, hi) = (ra.min(rb), ra.max(rb));
        self.parent[hi] = lo;
        true
    }

    /// The components, each sorted, ordered by their smallest node.
    pub fn groups(&self) -> Vec<Vec<usize>> {
        let mut by_root: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for a in 0..self.parent.len() {
            by_root.entry(self.find(a)).or_default().push(a);
        }
        by_root.into_values().collect()
    }

    /// The number of components.
    pub fn count(&self) -> usize {
        (0..self.parent.len()).filter(|&a| self.find(a) == a).count()
    }
}

/// A minimum spanning forest (Kruskal) of `n` nodes over `edges` `(a, b, weight)`; ties
/// broken by `(a, b)`, so the forest is the same on every machine.
pub fn spanning_forest(n: usize, edges: &[(usize, usize, f64)]) -> Vec<(usize, usize, f64)> {
    let mut sorted: Vec<&(usize, usize, f64)> = edges.iter().filter(|e| e.2.is_finite()).collect();
    sorted.sort_by(|x, y| x.2.total_cmp(&y.2).then((x.0, x.1).cmp(&(y.0, y.1))));
    let mut c = Components::new(n);
    sorted.into_iter().filter(|e| c.union(e.0, e.1)).copied().collect()
}

/// What the plan asks for next.
#[derive(Clone, Debug, PartialEq)]
pub enum Want {
    /// Check the straight lines of these edges (one batch).
    Lines(Vec<(usize, usize)>),
    /// Run the NEB on this edge.
    Search((usize, usize)),
    /// Nothing left to do within the budget.
    Done,
}

/// The state of one class graph in one space.
#[derive(Clone, Debug)]
pub struct Plan {
    n: usize,
    strategy: Strategy,
    /// Pairs `(a, b)`, a < b, by increasing distance (ties by index).
    by_distance: Vec<(usize, usize)>,
    /// The minimum spanning tree of the distances: `disconnected`'s first lines.
    euclidean_tree: Vec<(usize, usize)>,
    distance: HashMap<(usize, usize), f64>,
    known: HashMap<(usize, usize), Known>,
    max_searches: usize,
    lines_per_link: usize,
    searches: usize,
}

impl Plan {
    /// A plan over `n` nodes with the pairwise distances `distance(a, b)`: at most
    /// `max_searches` NEB runs, and (for `disconnected` and `mst`) at most `lines_per_link`
    /// lines between two components before their shortest failed link is searched.
    pub fn new(
        n: usize,
        strategy: Strategy,
        distance: impl Fn(usize, usize) -> f64,
        max_searches: usize,
        lines_per_link: usize,
    ) -> Self {
        let mut dist = HashMap::new();
        let mut by_distance = Vec::with_capacity(n * n.saturating_sub(1) / 2);
        for a in 0..n {
            for b in a + 1..n {
                dist.insert((a, b), distance(a, b));
                by_distance.push((a, b));
            }
        }
        by_distance.sort_by(|x, y| dist[x].total_cmp(&dist[y]).then(x.cmp(y)));
        let weighted: Vec<(usize, usize, f64)> = by_distance.iter().map(|e| (e.0, e.1, dist[e])).collect();
        let euclidean_tree = spanning_forest(n, &weighted).into_iter().map(|e| (e.0, e.1)).collect();
        Plan {
            euclidean_tree,
            n,
            strategy: strategy.resolve(n),
            by_distance,
            distance: dist,
            known: HashMap::new(),
            max_searches,
            lines_per_link: lines_per_link.max(1),
            searches: 0,
        }
    }

    /// The strategy in force (`auto` resolved).
    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    /// The distance between nodes `a` and `b` in the space.
    pub fn distance(&self, a: usize, b: usize) -> f64 {
        self.distance[&(a.min(b), a.max(b))]
    }

    /// What is known of edge `(a, b)`.
    pub fn known(&self, a: usize, b: usize) -> Known {
        self.known.get(&(a.min(b), a.max(b))).copied().unwrap_or_default()
    }

    /// Records a line's verdict.
    pub fn record_line(&mut self, a: usize, b: usize, joined: bool, max_loss: f64) {
        self.known.entry((a.min(b), a.max(b))).or_default().line = Some((joined, max_loss));
    }

    /// Records a search's verdict (and counts it against the budget).
    pub fn record_search(&mut self, a: usize, b: usize, joined: bool, max_loss: f64) {
        let k = self.known.entry((a.min(b), a.max(b))).or_default();
        if k.search.is_none() {
            self.searches += 1;
        }
        k.search = Some((joined, max_loss));
    }

    /// NEB runs recorded so far.
    pub fn searches(&self) -> usize {
        self.searches
    }

    /// The components of the graph of joined edges.
    pub fn components(&self) -> Components {
        let mut c = Components::new(self.n);
        let mut joined: Vec<&(usize, usize)> = self.known.iter().filter(|(_, k)| k.joined()).map(|(e, _)| e).collect();
        joined.sort();
        for &(a, b) in joined {
            c.union(a, b);
        }
        c
    }

    /// The minimum spanning forest of barriers over every examined edge.
    pub fn barrier_tree(&self) -> Vec<(usize, usize, f64)> {
        let mut edges: Vec<(usize, usize, f64)> = self
            .known
            .iter()
            .filter_map(|(&(a, b), k)| k.barrier().map(|w| (a, b, w)))
            .collect();
        edges.sort_by_key(|e| (e.0, e.1));
        spanning_forest(self.n, &edges)
    }

    fn budget_left(&self) -> bool {
        self.searches < self.max_searches
    }

    /// What to examine next.
    pub fn next(&self) -> Want {
        if self.n < 2 {
            return Want::Done;
        }
        match self.strategy {
            Strategy::All | Strategy::Auto => self.next_all(),
            Strategy::Disconnected => self.next_disconnected().unwrap_or(Want::Done),
            Strategy::Mst => self
                .next_disconnected()
                .or_else(|| self.next_mst())
                .unwrap_or(Want::Done),
        }
    }

    fn next_all(&self) -> Want {
        let lines: Vec<(usize, usize)> = self
            .by_distance
            .iter()
            .filter(|e| self.known(e.0, e.1).line.is_none())
            .copied()
            .collect();
        if !lines.is_empty() {
            return Want::Lines(lines);
        }
        if self.budget_left() {
            if let Some(&e) = self.by_distance.iter().find(|e| {
                let k = self.known(e.0, e.1);
                !k.joined() && k.search.is_none()
            }) {
                return Want::Search(e);
            }
        }
        Want::Done
    }

    /// `disconnected`'s next move, or `None` when the class is one component or nothing
    /// is left to try within the budget.
    fn next_disconnected(&self) -> Option<Want> {
        // First the lines of the Euclidean minimum spanning tree: the shortest way to span.
        let tree: Vec<(usize, usize)> = self
            .euclidean_tree
            .iter()
            .filter(|e| self.known(e.0, e.1).line.is_none())
            .copied()
            .collect();
        if !tree.is_empty() {
            return Some(Want::Lines(tree));
        }
        let c = self.components();
        if c.count() == 1 {
            return None;
        }
        // Kruskal over crossing pairs, shortest first, at most `lines_per_link` examined
        // lines per pair of components; a batch of a quarter of the nodes at a time.
        let batch = (self.n / 4).max(8);
        let mut tried: HashMap<(usize, usize), usize> = HashMap::new();
        let mut lines = Vec::new();
        for &(a, b) in &self.by_distance {
            let (ra, rb) = (c.find(a), c.find(b));
            if ra == rb {
                continue;
            }
            let link = (ra.min(rb), ra.max(rb));
            let n = tried.entry(link).or_insert(0);
            if *n >= self.lines_per_link {
                continue;
            }
            *n += 1;
            if self.known(a, b).line.is_none() {
                lines.push((a, b));
                if lines.len() >= batch {
                    break;
                }
            }
        }
        if !lines.is_empty() {
            return Some(Want::Lines(lines));
        }
        if !self.budget_left() {
            return None;
        }
        // The shortest crossing pair whose line failed and that was not searched.
        self.by_distance
            .iter()
            .find(|&&(a, b)| {
                let k = self.known(a, b);
                c.find(a) != c.find(b) && k.line.is_some() && k.search.is_none()
            })
            .map(|&e| Want::Search(e))
    }

    /// `mst`'s next move once the class is connected (or cannot be): lower the highest
    /// barrier of the spanning tree that is not a line.
    fn next_mst(&self) -> Option<Want> {
        if !self.budget_left() {
            return None;
        }
        let mut tree = self.barrier_tree();
        tree.sort_by(|x, y| y.2.total_cmp(&x.2).then((x.0, x.1).cmp(&(y.0, y.1))));
        for &(a, b, w) in &tree {
            let k = self.known(a, b);
            if k.line.is_some_and(|l| l.0) {
                continue;
            }
            if k.search.is_none() {
                return Some(Want::Search((a, b)));
            }
            // The tree without this edge: its two sides.
            let rest: Vec<(usize, usize, f64)> = tree.iter().filter(|e| (e.0, e.1) != (a, b)).copied().collect();
            let mut sides = Components::new(self.n);
            for e in &rest {
                sides.union(e.0, e.1);
            }
            // Only the `lines_per_link` shortest pairs across: the bypass is looked for where
            // it is likely, and the lines asked for stay bounded.
            let across = self
                .by_distance
                .iter()
                .filter(|&&(x, y)| sides.find(x) != sides.find(y))
                .take(self.lines_per_link);
            for &(x, y) in across {
                let kx = self.known(x, y);
                if kx.line.is_none() {
                    return Some(Want::Lines(vec![(x, y)]));
                }
                if kx.search.is_none() && kx.barrier().is_some_and(|bx| bx < w) {
                    return Some(Want::Search((x, y)));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nodes on a line at these positions; `joined(a, b)` says which lines keep the class.
    fn drive(
        pos: &[f64],
        strategy: Strategy,
        budget: usize,
        line_ok: impl Fn(usize, usize) -> bool,
        neb_ok: impl Fn(usize, usize) -> bool,
    ) -> (Plan, usize, usize) {
        let mut p = Plan::new(pos.len(), strategy, |a, b| (pos[a] - pos[b]).abs(), budget, 2);
        let (mut lines, mut searches) = (0, 0);
        for _ in 0..10_000 {
            match p.next() {
                Want::Lines(es) => {
                    assert!(!es.is_empty());
                    for (a, b) in es {
                        assert!(p.known(a, b).line.is_none(), "line {a}-{b} asked twice");
                        lines += 1;
                        let ok = line_ok(a, b);
                        p.record_line(a, b, ok, if ok { 0.1 } else { 5.0 });
                    }
                }
                Want::Search((a, b)) => {
                    assert!(p.known(a, b).search.is_none(), "search {a}-{b} asked twice");
                    searches += 1;
                    let ok = neb_ok(a, b);
                    p.record_search(a, b, ok, if ok { 1.0 } else { 4.0 });
                }
                Want::Done => return (p, lines, searches),
            }
        }
        panic!("the plan did not finish");
    }

    #[test]
    fn all_examines_every_line_and_searches_failures_within_budget() {
        let pos = [0.0, 1.0, 2.0, 3.0];
        let (p, lines, searches) = drive(&pos, Strategy::All, 2, |a, b| a + b != 3, |_, _| true);
        assert_eq!(lines, 6);
        // (0,3) and (1,2) fail; both searched, the shorter first.
        assert_eq!(searches, 2);
        assert_eq!(p.components().count(), 1);
    }

    #[test]
    fn disconnected_stops_at_one_component_with_tree_lines_only() {
        let pos: Vec<f64> = (0..20).map(|k| k as f64).collect();
        let (p, lines, searches) = drive(&pos, Strategy::Disconnected, 5, |_, _| true, |_, _| true);
        assert_eq!((lines, searches), (19, 0));
        assert_eq!(p.components().count(), 1);
    }

    #[test]
    fn disconnected_searches_the_shortest_failed_link_between_two_clusters() {
        // Two clusters; no line crosses; the NEB joins any pair.
        let pos = [0.0, 1.0, 2.0, 10.0, 11.0, 12.0];
        let side = |a: usize| a < 3;
        let (p, _, searches) = drive(&pos, Strategy::Disconnected, 3, |a, b| side(a) == side(b), |_, _| true);
        assert_eq!(searches, 1);
        assert!(
            p.known(2, 3).search.is_some(),
            "the shortest link (2,3) is the one searched"
        );
        assert_eq!(p.components().count(), 1);
    }

    #[test]
    fn the_budget_bounds_the_searches_and_the_class_may_stay_split() {
        let pos = [0.0, 1.0, 10.0, 11.0];
        let side = |a: usize| a < 2;
        let (p, _, searches) = drive(&pos, Strategy::Disconnected, 2, |a, b| side(a) == side(b), |_, _| false);
        assert_eq!(searches, 2);
        assert_eq!(p.components().count(), 2);
    }

    #[test]
    fn mst_replaces_a_high_barrier_link_by_a_searched_lower_one() {
        let pos = [0.0, 1.0, 10.0, 11.0];
        let side = |a: usize| a < 2;
        let (p, _, searches) = drive(&pos, Strategy::Mst, 10, |a, b| side(a) == side(b), |_, _| true);
        // Connected by one search; mst then has nothing lower to find (every NEB gives 1.0).
        assert!(searches >= 1);
        assert_eq!(p.components().count(), 1);
        let tree = p.barrier_tree();
        assert_eq!(tree.len(), 3);
        assert!(tree.iter().all(|e| e.2 <= 1.0));
    }

    #[test]
    fn spanning_forest_is_kruskal_with_index_ties() {
        let f = spanning_forest(4, &[(0, 1, 1.0), (1, 2, 1.0), (0, 2, 1.0), (2, 3, f64::INFINITY)]);
        assert_eq!(f, vec![(0, 1, 1.0), (0, 2, 1.0)]);
    }
}
