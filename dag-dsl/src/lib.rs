//! Tandem's workflow file format.
//!
//! A workflow file (YAML) goes through one road only: text → spanned YAML tree → raw structs
//! (unknown fields refused) → [`compile`], which runs every check and returns *all* errors at
//! once (each with file:line:column and a field path) or a [`WorkflowSpec`]: the validated
//! graph with defaults resolved and matrices expanded. Nothing downstream sees an unvalidated
//! workflow.

pub mod diagnostic;
pub mod spec;
pub mod template;

pub use diagnostic::{Diagnostic, Diagnostics};
pub use spec::{
    Jitter, ParamError, ParamSpec, RetryPolicy, TaskAction, TaskIndex, TaskSpec, TriggerRule,
    WorkflowSpec,
};
pub use template::{RenderError, Segment, Template, TemplateContext};
