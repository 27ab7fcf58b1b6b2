//! The task graph at the level of task keys (before matrix expansion): resolves `needs`,
//! finds cycles and answers "is X upstream of Y" for output references. Built on petgraph.

use std::collections::HashMap;

use petgraph::Direction;
use petgraph::algo::{kosaraju_scc, toposort};
use petgraph::graph::{DiGraph, NodeIndex};

use crate::names::shorten;
use crate::raw::Sp;
use crate::report::{Path, Report, did_you_mean};
use crate::yaml::Pos;

/// Where task `task` names an upstream in its `needs`.
#[derive(Debug, Clone, Copy)]
struct NeedSite {
    /// Index of the upstream task.
    upstream: usize,
    /// Position of the list item.
    pos: Pos,
    /// Index in the `needs` list.
    index: usize,
}

/// The graph of task keys; an edge `a → b` means `b` needs `a`.
pub(super) struct TaskGraph {
    graph: DiGraph<(), ()>,
    /// Per task, its valid needs in list order.
    sites: Vec<Vec<NeedSite>>,
    /// Position of each task in a topological order; `None` when the graph has a cycle.
    rank: Option<Vec<usize>>,
    /// Visit marks for [`TaskGraph::is_upstream`] (a search number per task).
    marks: Vec<u32>,
    search: u32,
}

/// One task's identity and `needs`, as input to [`TaskGraph::build`].
pub(super) struct TaskNeeds<'a> {
    /// The task id and its position.
    pub key: &'a Sp<String>,
    /// The `needs` list, if any.
    pub needs: Option<&'a Sp<Vec<Sp<String>>>>,
}

impl TaskGraph {
    /// Resolves every task's `needs` (reporting unknown ids, self-needs and repeated ids) and
    /// reports each cycle once. `index` gives each task's number by id.
    pub(super) fn build(
        report: &mut Report,
        tasks: &[TaskNeeds<'_>],
        index: &HashMap<&str, usize>,
    ) -> TaskGraph {
        let mut graph = DiGraph::<(), ()>::with_capacity(tasks.len(), tasks.len());
        for _ in tasks {
            graph.add_node(());
        }
        let mut sites = Vec::with_capacity(tasks.len());
        // For each upstream: (1 + the task whose list named it last, index of that site), so
        // repeated ids are found without scanning the list.
        let mut named_by: Vec<(usize, usize)> = vec![(0, 0); tasks.len()];
        for (task_index, task) in tasks.iter().enumerate() {
            let mut task_sites: Vec<NeedSite> = Vec::new();
            let id = &task.key.value;
            let tasks_path = Path::ROOT.key("tasks");
            let task_path = tasks_path.key(id);
            let needs_path = task_path.key("needs");
            for (list_index, need) in task.needs.iter().flat_map(|n| n.value.iter()).enumerate() {
                let path = needs_path.index(list_index);
                let Some(&upstream) = index.get(need.value.as_str()) else {
                    let help =
                        did_you_mean(&need.value, tasks.iter().map(|t| t.key.value.as_str()));
                    report.push(
                        need.pos,
                        &path,
                        format!(
                            "task `{id}` needs `{}`, which is not a task of this workflow",
                            shorten(&need.value)
                        ),
                        help,
                    );
                    continue;
                };
                if upstream == task_index {
                    report.error(need.pos, &path, format!("task `{id}` needs itself"));
                    continue;
                }
                let (named_in, site_index) = named_by[upstream];
                if named_in == task_index + 1 {
                    let first = &task_sites[site_index];
                    report.error(
                        need.pos,
                        &path,
                        format!(
                            "task `{id}` needs `{}` twice (also at `{}`)",
                            need.value,
                            needs_path.index(first.index)
                        ),
                    );
                    continue;
                }
                graph.add_edge(NodeIndex::new(upstream), NodeIndex::new(task_index), ());
                named_by[upstream] = (task_index + 1, task_sites.len());
                task_sites.push(NeedSite {
                    upstream,
                    pos: need.pos,
                    index: list_index,
                });
            }
            sites.push(task_sites);
        }
        let rank = match toposort(&graph, None) {
            Ok(order) => {
                let mut rank = vec![0; tasks.len()];
                for (position, node) in order.into_iter().enumerate() {
                    rank[node.index()] = position;
                }
                Some(rank)
            }
            Err(_) => None,
        };
        let this = TaskGraph {
            graph,
            sites,
            rank,
            marks: vec![0; tasks.len()],
            search: 0,
        };
        if this.rank.is_none() {
            this.report_cycles(report, tasks);
        }
        this
    }

    /// Whether the graph has no cycle.
    pub(super) fn is_acyclic(&self) -> bool {
        self.rank.is_some()
    }

    /// The direct upstream tasks of `task`, in the order its `needs` lists them.
    pub(super) fn upstream(&self, task: usize) -> impl Iterator<Item = usize> + '_ {
        self.sites[task].iter().map(|site| site.upstream)
    }

    /// Reports one cycle per strongly connected component, as `a -> b -> a` starting at the
    /// component's first task in file order, at the `needs` item that closes it.
    fn report_cycles(&self, report: &mut Report, tasks: &[TaskNeeds<'_>]) {
        let mut components: Vec<Vec<usize>> = kosaraju_scc(&self.graph)
            .into_iter()
            .filter(|component| component.len() > 1)
            .map(|component| {
                let mut members: Vec<usize> = component.iter().map(|n| n.index()).collect();
                members.sort_unstable();
                members
            })
            .collect();
        components.sort();
        let mut in_component = vec![false; tasks.len()];
        for component in components {
            for &member in &component {
                in_component[member] = true;
            }
            let start = component[0];
            if let Some(cycle) = self.shortest_cycle(start, &in_component) {
                let names: Vec<&str> = cycle.iter().map(|&t| tasks[t].key.value.as_str()).collect();
                let closing = cycle[cycle.len() - 2];
                let site = self.sites[start]
                    .iter()
                    .find(|site| site.upstream == closing);
                let id = &tasks[start].key.value;
                let tasks_path = Path::ROOT.key("tasks");
                let task_path = tasks_path.key(id);
                let needs_path = task_path.key("needs");
                let (pos, path) = match site {
                    Some(site) => (site.pos, needs_path.index(site.index)),
                    None => (tasks[start].key.pos, task_path),
                };
                report.error_with_help(
                    pos,
                    &path,
                    format!("cycle: `{}`", names.join(" -> ")),
                    "`a -> b` means `b` needs `a`; remove one of these needs",
                );
            }
            for &member in &component {
                in_component[member] = false;
            }
        }
    }

    /// The shortest cycle through `start` inside the marked component, as task indexes from
    /// `start` back to `start` (breadth-first search along edges).
    fn shortest_cycle(&self, start: usize, in_component: &[bool]) -> Option<Vec<usize>> {
        let mut parent: HashMap<usize, usize> = HashMap::new();
        let mut queue = std::collections::VecDeque::from([start]);
        while let Some(node) = queue.pop_front() {
            for next in self
                .graph
                .neighbors_directed(NodeIndex::new(node), Direction::Outgoing)
            {
                let next = next.index();
                if next == start {
                    let mut cycle = vec![start];
                    let mut at = node;
                    while at != start {
                        cycle.push(at);
                        at = *parent.get(&at)?;
                    }
                    cycle.push(start);
                    cycle.reverse();
                    return Some(cycle);
                }
                if in_component[next] && !parent.contains_key(&next) {
                    parent.insert(next, node);
                    queue.push_back(next);
                }
            }
        }
        None
    }

    /// Whether `target` is a transitive upstream (ancestor) of `task`. Searches backwards
    /// from `task`; in an acyclic graph it skips tasks ordered before `target`, which cannot
    /// lie on a path from it.
    pub(super) fn is_upstream(&mut self, target: usize, task: usize) -> bool {
        if target == task {
            return false;
        }
        if let Some(rank) = &self.rank
            && rank[target] > rank[task]
        {
            return false;
        }
        self.search = self.search.wrapping_add(1);
        if self.search == 0 {
            self.marks.iter_mut().for_each(|mark| *mark = 0);
            self.search = 1;
        }
        let mut stack = vec![task];
        self.marks[task] = self.search;
        while let Some(node) = stack.pop() {
            for upstream in self
                .graph
                .neighbors_directed(NodeIndex::new(node), Direction::Incoming)
            {
                let upstream = upstream.index();
                if upstream == target {
                    return true;
                }
                if self.marks[upstream] == self.search {
                    continue;
                }
                if let Some(rank) = &self.rank
                    && rank[upstream] < rank[target]
                {
                    continue;
                }
                self.marks[upstream] = self.search;
                stack.push(upstream);
            }
        }
        false
    }
}
