//! Why a boot stopped: the stage, what was found, and what resolves it.

use crate::boot::stage::Stage;
use crate::decide::be::BeRefusal;
use crate::decide::choose::Candidate;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Failure {
    pub stage: Stage,
    pub message: String,
    /// The kernel parameter (or action) that resolves it.
    pub hint: String,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub candidates: Vec<Candidate>,
}

pub fn fail(stage: Stage, message: impl Into<String>, hint: impl Into<String>) -> Failure {
    Failure { stage, message: message.into(), hint: hint.into(), candidates: Vec::new() }
}

impl From<BeRefusal> for Failure {
    fn from(r: BeRefusal) -> Self {
        match r.environments.is_empty() {
            true => fail(Stage::ChooseBe, r.why, r.hint),
            false => fail(Stage::ChooseBe, format!("{} (boot environments: {})", r.why, r.environments.join(", ")), r.hint),
        }
    }
}
