//! Workflows: graphs of job-template nodes with success, failure and always edges, as in AWX.
//! Templates are validated (no cycles, no dangling edges, known templates); a workflow job is a
//! stream whose progress a pure scheduler ([`WorkflowRun`]) turns into the next launches.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use super::event::{AuditInfo, Audited};
use super::job::{JobStatus, LaunchedBy};
use super::{DomainError, FieldErrors, check_name, check_name_free};
use crate::codec::{CodecError, EventBody, Protected, RawJson, decode_as};

/// Longest workflow name.
pub const MAX_NAME: usize = 512;

/// Stream of one workflow job template.
pub fn template_stream(id: u64) -> String {
    format!("workflow_template-{id}")
}

/// Stream of one workflow job (a run).
pub fn job_stream(id: u64) -> String {
    format!("workflow_job-{id}")
}

/// One node: a job template and where to go next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowNode {
    /// Unique within the workflow.
    pub id: String,
    /// The job template it runs.
    pub job_template: u64,
    /// Run after this node succeeds.
    pub success_nodes: Vec<String>,
    /// Run after this node fails (failed, error or canceled).
    pub failure_nodes: Vec<String>,
    /// Run after this node finishes, whatever the outcome.
    pub always_nodes: Vec<String>,
}

/// A workflow job template's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowConfig {
    /// Unique within the organization.
    pub name: String,
    /// Free text.
    pub description: String,
    /// The graph.
    pub nodes: Vec<WorkflowNode>,
    /// Extra variables for every node (JSON object).
    pub extra_vars: RawJson,
    /// Seconds after which a still-running workflow publishes `workflow.duration_exceeded`.
    pub alert_after_seconds: Option<u64>,
}

macro_rules! workflow_event {
    ($(#[$doc:meta])* $name:ident = $type:literal { $($(#[$fdoc:meta])* $field:ident: $ty:ty),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        pub struct $name {
            $($(#[$fdoc])* pub $field: $ty,)*
        }

        impl EventBody for $name {
            const TYPE: &'static str = $type;
        }
    };
}

workflow_event!(
    /// A workflow job template was created.
    WorkflowTemplateCreated = "workflow_template.created" {
        /// Id.
        id: u64,
        /// Organization.
        organization: u64,
        /// Settings.
        config: WorkflowConfig,
    }
);
workflow_event!(
    /// A workflow job template changed.
    WorkflowTemplateUpdated = "workflow_template.updated" {
        /// Id.
        id: u64,
        /// Organization.
        organization: u64,
        /// New settings.
        config: WorkflowConfig,
    }
);
workflow_event!(
    /// A workflow job template was deleted.
    WorkflowTemplateDeleted = "workflow_template.deleted" {
        /// Id.
        id: u64,
        /// Organization.
        organization: u64,
        /// Name at deletion.
        name: String,
    }
);
/// A workflow job was launched (with a snapshot of the graph).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowLaunched {
    /// Id.
    pub id: u64,
    /// Organization.
    pub organization: u64,
    /// The template.
    pub template: u64,
    /// Its name at launch.
    pub template_name: String,
    /// The graph at launch.
    pub nodes: Vec<WorkflowNode>,
    /// Extra variables for every node, sealed under the organization's data key (they carry
    /// `forge_eda_payload`).
    pub extra_vars: Protected<RawJson>,
    /// Alert threshold.
    pub alert_after_seconds: Option<u64>,
    /// Who launched it.
    pub launched_by: LaunchedBy,
}

/// [`WorkflowLaunched`] v1, before extra variables were sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct WorkflowLaunchedV1 {
    id: u64,
    organization: u64,
    template: u64,
    template_name: String,
    nodes: Vec<WorkflowNode>,
    extra_vars: RawJson,
    alert_after_seconds: Option<u64>,
    launched_by: LaunchedBy,
}

impl EventBody for WorkflowLaunched {
    const TYPE: &'static str = "workflow.launched";
    const VERSION: u16 = 2;

    fn upcast(version: u16, data: &[u8]) -> Result<Self, CodecError> {
        match version {
            1 => decode_as::<WorkflowLaunchedV1>(Self::TYPE, 1, data).map(|v1| Self {
                id: v1.id,
                organization: v1.organization,
                template: v1.template,
                template_name: v1.template_name,
                nodes: v1.nodes,
                extra_vars: Protected::Clear(v1.extra_vars),
                alert_after_seconds: v1.alert_after_seconds,
                launched_by: v1.launched_by,
            }),
            _ => Err(CodecError::UnknownVersion {
                event_type: Self::TYPE,
                version,
            }),
        }
    }
}

workflow_event!(
    /// The workflow started its first nodes.
    WorkflowStarted = "workflow.started" {
        /// Id.
        id: u64,
        /// Organization.
        organization: u64,
        /// The workflow job template it runs.
        template: u64,
    }
);
workflow_event!(
    /// A node's job was launched.
    WorkflowNodeLaunched = "workflow.node_launched" {
        /// Workflow job id.
        id: u64,
        /// Organization.
        organization: u64,
        /// Node id.
        node: String,
        /// The job launched for it.
        job: u64,
    }
);
workflow_event!(
    /// A node's job finished.
    WorkflowNodeCompleted = "workflow.node_completed" {
        /// Workflow job id.
        id: u64,
        /// Organization.
        organization: u64,
        /// The workflow job template it runs.
        template: u64,
        /// Node id.
        node: String,
        /// Its job.
        job: u64,
        /// How the job ended.
        status: JobStatus,
    }
);
workflow_event!(
    /// The workflow finished.
    WorkflowFinished = "workflow.finished" {
        /// Id.
        id: u64,
        /// Organization.
        organization: u64,
        /// The workflow job template it runs.
        template: u64,
        /// Successful, failed or canceled.
        status: JobStatus,
        /// Milliseconds from launch to finish.
        elapsed_ms: u64,
        /// Why it failed or was canceled.
        explanation: Option<String>,
    }
);
workflow_event!(
    /// Someone asked to cancel the workflow.
    WorkflowCancelRequested = "workflow.cancel_requested" {
        /// Id.
        id: u64,
        /// Organization.
        organization: u64,
    }
);
workflow_event!(
    /// The workflow has been running longer than its alert threshold.
    WorkflowDurationExceeded = "workflow.duration_exceeded" {
        /// Id.
        id: u64,
        /// Organization.
        organization: u64,
        /// The workflow job template it runs.
        template: u64,
        /// The threshold crossed.
        alert_after_seconds: u64,
    }
);

fn audit(
    resource_type: &'static str,
    id: u64,
    organization: u64,
    details: serde_json::Value,
) -> Option<AuditInfo> {
    Some(AuditInfo {
        organization: Some(organization),
        resource_type,
        resource_id: id.to_string(),
        details,
    })
}

impl Audited for WorkflowTemplateCreated {
    fn audit(&self) -> Option<AuditInfo> {
        audit(
            "workflow_job_template",
            self.id,
            self.organization,
            serde_json::json!({"name": self.config.name, "nodes": self.config.nodes.len()}),
        )
    }
}

impl Audited for WorkflowTemplateUpdated {
    fn audit(&self) -> Option<AuditInfo> {
        audit(
            "workflow_job_template",
            self.id,
            self.organization,
            serde_json::json!({"name": self.config.name, "nodes": self.config.nodes.len()}),
        )
    }
}

impl Audited for WorkflowTemplateDeleted {
    fn audit(&self) -> Option<AuditInfo> {
        audit(
            "workflow_job_template",
            self.id,
            self.organization,
            serde_json::json!({"name": self.name}),
        )
    }
}

impl Audited for WorkflowLaunched {
    fn audit(&self) -> Option<AuditInfo> {
        audit(
            "workflow_job",
            self.id,
            self.organization,
            serde_json::json!({"workflow_job_template": self.template, "launched_by": self.launched_by.to_json()}),
        )
    }
}

impl Audited for WorkflowCancelRequested {
    fn audit(&self) -> Option<AuditInfo> {
        audit(
            "workflow_job",
            self.id,
            self.organization,
            serde_json::json!({}),
        )
    }
}

macro_rules! not_audited {
    ($($t:ty),*) => {$(
        impl Audited for $t {
            fn audit(&self) -> Option<AuditInfo> {
                None
            }
        }
    )*};
}

not_audited!(
    WorkflowStarted,
    WorkflowNodeLaunched,
    WorkflowNodeCompleted,
    WorkflowFinished,
    WorkflowDurationExceeded
);

/// One node as clients send it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeInput {
    /// Unique id (default: its position, from 1).
    pub id: Option<String>,
    /// The job template it runs.
    pub job_template: Option<u64>,
    /// Success edges.
    pub success_nodes: Option<Vec<String>>,
    /// Failure edges.
    pub failure_nodes: Option<Vec<String>>,
    /// Always edges.
    pub always_nodes: Option<Vec<String>>,
}

/// Client input for creating or patching a workflow job template.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowInput {
    /// Unique within the organization.
    pub name: Option<String>,
    /// Organization (on creation only).
    pub organization: Option<u64>,
    /// Free text.
    pub description: Option<String>,
    /// The graph.
    pub nodes: Option<Vec<NodeInput>>,
    /// Extra variables (object).
    pub extra_vars: Option<serde_json::Value>,
    /// Alert threshold in seconds.
    pub alert_after_seconds: Option<u64>,
}

/// Turns node input into nodes. When no node names any edge, the list is a sequence: each
/// node's success edge goes to the next.
pub fn nodes_from_input(input: Vec<NodeInput>, errors: &mut FieldErrors) -> Vec<WorkflowNode> {
    let plain_list = input.iter().all(|n| {
        n.success_nodes.is_none() && n.failure_nodes.is_none() && n.always_nodes.is_none()
    });
    let ids: Vec<String> = input
        .iter()
        .enumerate()
        .map(|(i, n)| n.id.clone().unwrap_or_else(|| (i + 1).to_string()))
        .collect();
    input
        .into_iter()
        .enumerate()
        .map(|(i, n)| {
            let job_template = n.job_template.unwrap_or_else(|| {
                errors.add("nodes", format!("nodes[{i}].job_template is required."));
                0
            });
            let success_nodes = match (plain_list, n.success_nodes) {
                (true, _) => ids.get(i + 1).cloned().into_iter().collect(),
                (false, edges) => edges.unwrap_or_default(),
            };
            WorkflowNode {
                id: ids[i].clone(),
                job_template,
                success_nodes,
                failure_nodes: n.failure_nodes.unwrap_or_default(),
                always_nodes: n.always_nodes.unwrap_or_default(),
            }
        })
        .collect()
}

/// Checks a graph: at least one node, unique ids, edges to existing nodes, no cycle, known
/// templates (`template_exists`).
pub fn validate_graph(
    nodes: &[WorkflowNode],
    template_exists: impl Fn(u64) -> bool,
    errors: &mut FieldErrors,
) {
    if nodes.is_empty() {
        errors.add("nodes", "A workflow needs at least one node.");
        return;
    }
    let mut seen = BTreeSet::new();
    for node in nodes {
        if node.id.is_empty() || !seen.insert(node.id.as_str()) {
            errors.add(
                "nodes",
                format!("Node id \"{}\" is empty or used twice.", node.id),
            );
        }
        if node.job_template != 0 && !template_exists(node.job_template) {
            errors.add(
                "nodes",
                format!(
                    "Node \"{}\": job template {} does not exist in this organization.",
                    node.id, node.job_template
                ),
            );
        }
        for target in edges(node) {
            if !nodes.iter().any(|n| n.id == target) {
                errors.add(
                    "nodes",
                    format!(
                        "Node \"{}\" has an edge to unknown node \"{target}\".",
                        node.id
                    ),
                );
            }
        }
    }
    if let Some(cycle) = find_cycle(nodes) {
        errors.add(
            "nodes",
            format!("The graph has a cycle through node \"{cycle}\"."),
        );
    }
}

fn edges(node: &WorkflowNode) -> impl Iterator<Item = &str> {
    node.success_nodes
        .iter()
        .chain(&node.failure_nodes)
        .chain(&node.always_nodes)
        .map(String::as_str)
}

/// A node on a cycle, if the graph has one (depth-first search with colours).
fn find_cycle(nodes: &[WorkflowNode]) -> Option<String> {
    let index: HashMap<&str, &WorkflowNode> = nodes.iter().map(|n| (n.id.as_str(), n)).collect();
    let mut colour: HashMap<&str, u8> = HashMap::new();
    fn visit<'a>(
        id: &'a str,
        index: &HashMap<&'a str, &'a WorkflowNode>,
        colour: &mut HashMap<&'a str, u8>,
    ) -> Option<String> {
        match colour.get(id) {
            Some(1) => return Some(id.to_owned()),
            Some(2) => return None,
            _ => {}
        }
        colour.insert(id, 1);
        if let Some(node) = index.get(id) {
            for next in edges(node) {
                if let Some(cycle) = visit(next, index, colour) {
                    return Some(cycle);
                }
            }
        }
        colour.insert(id, 2);
        None
    }
    nodes.iter().find_map(|n| visit(&n.id, &index, &mut colour))
}

/// Builds and validates a workflow template from `input` over `base`.
pub fn configure(
    base: Option<WorkflowConfig>,
    input: WorkflowInput,
    template_exists: impl Fn(u64) -> bool,
    name_taken: impl Fn(&str) -> bool,
) -> Result<WorkflowConfig, DomainError> {
    let mut errors = FieldErrors::default();
    let name = input
        .name
        .or_else(|| base.as_ref().map(|b| b.name.clone()))
        .unwrap_or_default();
    check_name(&mut errors, "name", &name, MAX_NAME);
    let nodes = match input.nodes {
        Some(nodes) => nodes_from_input(nodes, &mut errors),
        None => base.as_ref().map(|b| b.nodes.clone()).unwrap_or_default(),
    };
    validate_graph(&nodes, template_exists, &mut errors);
    let extra_vars = match input.extra_vars {
        None => base
            .as_ref()
            .map(|b| b.extra_vars.clone())
            .unwrap_or_else(|| RawJson::from_value(&serde_json::json!({}))),
        Some(serde_json::Value::Null) => RawJson::from_value(&serde_json::json!({})),
        Some(v @ serde_json::Value::Object(_)) => RawJson::from_value(&v),
        Some(_) => {
            errors.add("extra_vars", "Extra variables must be a JSON object.");
            RawJson::default()
        }
    };
    let alert_after_seconds = input
        .alert_after_seconds
        .or(base.as_ref().and_then(|b| b.alert_after_seconds));
    let description = input
        .description
        .or_else(|| base.as_ref().map(|b| b.description.clone()))
        .unwrap_or_default();
    errors.into_result()?;
    check_name_free(
        "A workflow job template",
        base.as_ref().map(|b| b.name.as_str()),
        &name,
        name_taken,
    )?;
    Ok(WorkflowConfig {
        name,
        description,
        nodes,
        extra_vars,
        alert_after_seconds,
    })
}

/// A node's progress in a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeState {
    /// Not reached (yet, or ever).
    NotRun,
    /// Its job is running (or pending).
    Running(u64),
    /// Its job finished.
    Done(u64, JobStatus),
}

/// A workflow run's state, folded from its events, and the scheduling decisions it implies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowRun {
    /// The graph.
    pub nodes: Vec<WorkflowNode>,
    /// Each node's state, by id.
    pub states: BTreeMap<String, NodeState>,
    /// Nodes due to launch (triggered, not yet launched).
    pub due: BTreeSet<String>,
    /// Whether a cancel was requested.
    pub canceled: bool,
}

impl WorkflowRun {
    /// A run of `nodes` where the nodes without incoming edges are due.
    pub fn new(nodes: Vec<WorkflowNode>) -> Self {
        let targets: BTreeSet<&str> = nodes.iter().flat_map(edges).collect();
        let due = nodes
            .iter()
            .filter(|n| !targets.contains(n.id.as_str()))
            .map(|n| n.id.clone())
            .collect();
        let states = nodes
            .iter()
            .map(|n| (n.id.clone(), NodeState::NotRun))
            .collect();
        Self {
            nodes,
            states,
            due,
            canceled: false,
        }
    }

    /// The node with `id`.
    pub fn node(&self, id: &str) -> Option<&WorkflowNode> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// Records a node's launch.
    pub fn launched(&mut self, node: &str, job: u64) {
        self.due.remove(node);
        self.states.insert(node.to_owned(), NodeState::Running(job));
    }

    /// Records a node's completion and makes its successors (by outcome) due.
    pub fn completed(&mut self, node: &str, job: u64, status: JobStatus) {
        self.states
            .insert(node.to_owned(), NodeState::Done(job, status));
        if self.canceled {
            return;
        }
        let Some(n) = self.node(node).cloned() else {
            return;
        };
        let next = if status == JobStatus::Successful {
            &n.success_nodes
        } else {
            &n.failure_nodes
        };
        for id in next.iter().chain(&n.always_nodes) {
            if self.states.get(id) == Some(&NodeState::NotRun) {
                self.due.insert(id.clone());
            }
        }
    }

    /// Records a cancel request: nothing more launches.
    pub fn cancel(&mut self) {
        self.canceled = true;
        self.due.clear();
    }

    /// Jobs still running.
    pub fn running_jobs(&self) -> Vec<u64> {
        self.states
            .values()
            .filter_map(|s| {
                if let NodeState::Running(job) = s {
                    Some(*job)
                } else {
                    None
                }
            })
            .collect()
    }

    /// The final status once nothing runs and nothing is due: canceled if canceled; failed if a
    /// node failed without a failure or always edge to handle it; successful otherwise.
    pub fn outcome(&self) -> Option<(JobStatus, Option<String>)> {
        if !self.due.is_empty() || !self.running_jobs().is_empty() {
            return None;
        }
        if self.canceled {
            return Some((JobStatus::Canceled, Some("canceled on request".into())));
        }
        let unhandled: Vec<&str> = self
            .nodes
            .iter()
            .filter(|n| matches!(self.states.get(&n.id), Some(NodeState::Done(_, s)) if *s != JobStatus::Successful))
            .filter(|n| n.failure_nodes.is_empty() && n.always_nodes.is_empty())
            .map(|n| n.id.as_str())
            .collect();
        if unhandled.is_empty() {
            Some((JobStatus::Successful, None))
        } else {
            Some((
                JobStatus::Failed,
                Some(format!(
                    "node(s) {} failed with no failure path",
                    unhandled.join(", ")
                )),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, success: &[&str], failure: &[&str], always: &[&str]) -> WorkflowNode {
        let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        WorkflowNode {
            id: id.into(),
            job_template: 1,
            success_nodes: own(success),
            failure_nodes: own(failure),
            always_nodes: own(always),
        }
    }

    #[test]
    fn a_plain_list_becomes_a_sequence() {
        let mut errors = FieldErrors::default();
        let input: Vec<NodeInput> = serde_json::from_value(serde_json::json!([{"job_template": 1}, {"job_template": 2}, {"id": "last", "job_template": 3}])).unwrap();
        let nodes = nodes_from_input(input, &mut errors);
        assert!(errors.is_empty());
        assert_eq!(nodes[0].success_nodes, vec!["2"]);
        assert_eq!(nodes[1].success_nodes, vec!["last"]);
        assert!(nodes[2].success_nodes.is_empty());
    }

    #[test]
    fn graphs_with_cycles_dangling_edges_or_unknown_templates_are_refused() {
        let check = |nodes: Vec<WorkflowNode>| {
            let mut errors = FieldErrors::default();
            validate_graph(&nodes, |t| t == 1, &mut errors);
            errors
        };
        assert!(check(vec![node("a", &["b"], &[], &[]), node("b", &[], &[], &[])]).is_empty());
        assert!(
            check(vec![
                node("a", &["b"], &[], &[]),
                node("b", &[], &["a"], &[])
            ])
            .0["nodes"][0]
                .contains("cycle")
        );
        assert!(
            check(vec![node("a", &["ghost"], &[], &[])]).0["nodes"][0].contains("unknown node")
        );
        let mut unknown = node("a", &[], &[], &[]);
        unknown.job_template = 9;
        assert!(check(vec![unknown]).0["nodes"][0].contains("does not exist"));
        assert!(check(vec![]).0.contains_key("nodes"));
        assert!(
            check(vec![node("a", &[], &[], &[]), node("a", &[], &[], &[])]).0["nodes"][0]
                .contains("twice")
        );
    }

    #[test]
    fn failure_edges_route_and_handle_failures() {
        // a --success--> b ; a --failure--> cleanup ; b --always--> report
        let mut run = WorkflowRun::new(vec![
            node("a", &["b"], &["cleanup"], &[]),
            node("b", &[], &[], &["report"]),
            node("cleanup", &[], &[], &[]),
            node("report", &[], &[], &[]),
        ]);
        assert_eq!(run.due.iter().collect::<Vec<_>>(), vec!["a"]);
        run.launched("a", 10);
        assert_eq!(run.outcome(), None);
        run.completed("a", 10, JobStatus::Failed);
        assert_eq!(run.due.iter().collect::<Vec<_>>(), vec!["cleanup"]);
        run.launched("cleanup", 11);
        run.completed("cleanup", 11, JobStatus::Successful);
        assert_eq!(
            run.outcome(),
            Some((JobStatus::Successful, None)),
            "a's failure was handled"
        );
        assert_eq!(run.states["b"], NodeState::NotRun);

        let mut unhandled =
            WorkflowRun::new(vec![node("a", &["b"], &[], &[]), node("b", &[], &[], &[])]);
        unhandled.launched("a", 1);
        unhandled.completed("a", 1, JobStatus::Failed);
        let (status, why) = unhandled.outcome().unwrap();
        assert_eq!(status, JobStatus::Failed);
        assert!(why.unwrap().contains('a'));
    }

    #[test]
    fn canceling_stops_new_launches() {
        let mut run = WorkflowRun::new(vec![node("a", &["b"], &[], &[]), node("b", &[], &[], &[])]);
        run.launched("a", 1);
        run.cancel();
        assert_eq!(run.running_jobs(), vec![1]);
        run.completed("a", 1, JobStatus::Canceled);
        assert!(run.due.is_empty());
        assert_eq!(run.outcome().unwrap().0, JobStatus::Canceled);
    }

    #[test]
    fn v1_launches_upcast_with_their_variables_in_the_clear() {
        let v1 = WorkflowLaunchedV1 {
            id: 4,
            organization: 2,
            template: 9,
            template_name: "wf".into(),
            nodes: Vec::new(),
            extra_vars: RawJson::from_value(&serde_json::json!({"stage": "qa"})),
            alert_after_seconds: Some(30),
            launched_by: LaunchedBy::User("admin".into()),
        };
        let e = WorkflowLaunched::upcast(1, &postcard::to_stdvec(&v1).unwrap()).unwrap();
        assert_eq!(e.extra_vars, Protected::Clear(v1.extra_vars));
        assert_eq!((e.id, e.alert_after_seconds), (4, Some(30)));
    }
}
