//! What each compared slot is called and drawn as, the same in every tab: its label (the run
//! and step of a checkpoint, else the model's file name), its run and step, and its colour.

use egui::Color32;
use engine::store::RunId;
use engine::train::checkpoint::{CheckpointRef, ModelSpec};

use super::MAX_CHECKPOINTS;
use super::worker::{self, Catalog};

/// The run and step of a checkpoint spec, from the catalog.
pub(super) fn run_step(catalog: Option<&Catalog>, spec: &str) -> Option<(RunId, u64)> {
    match ModelSpec::parse(spec) {
        ModelSpec::Checkpoint(CheckpointRef::RunStep { run, step }) => Some((run, step)),
        ModelSpec::Checkpoint(at) => {
            find_checkpoint(catalog?, at).map(|c| (c.record.run_id, c.record.step))
        }
        ModelSpec::Model(_) => None,
    }
}

/// The checkpoint `at` names, among the catalog's.
pub(super) fn find_checkpoint(
    catalog: &Catalog,
    at: CheckpointRef,
) -> Option<&worker::CheckpointChoice> {
    catalog.checkpoints.iter().find(|ch| match at {
        CheckpointRef::Id(id) => ch.record.id == id,
        CheckpointRef::RunStep { run, step } => ch.record.run_id == run && ch.record.step == step,
    })
}

pub(super) fn label_of(catalog: Option<&Catalog>, spec: &str) -> String {
    if let ModelSpec::Checkpoint(r) = ModelSpec::parse(spec) {
        let found = catalog.and_then(|c| find_checkpoint(c, r));
        return match found {
            Some(ch) => format!(
                "#{} {} · step {}",
                ch.record.run_id, ch.run_name, ch.record.step
            ),
            None => format!("checkpoint {spec}"),
        };
    }
    std::path::Path::new(spec)
        .file_name()
        .map_or_else(|| spec.to_string(), |n| n.to_string_lossy().into_owned())
}

/// The colour of slot `i`'s label, the same in every tab.
pub fn slot_color(i: usize) -> Color32 {
    const COLORS: [Color32; MAX_CHECKPOINTS] = [
        Color32::from_rgb(90, 160, 240),
        Color32::from_rgb(240, 150, 60),
        Color32::from_rgb(120, 200, 110),
        Color32::from_rgb(210, 110, 200),
    ];
    COLORS[i % MAX_CHECKPOINTS]
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::store::CheckpointRecord;

    #[test]
    fn labels_name_the_run_and_step_of_a_checkpoint() {
        let catalog = Catalog {
            checkpoints: vec![worker::CheckpointChoice {
                record: CheckpointRecord {
                    id: 7,
                    run_id: 3,
                    step: 40,
                    path: "/x".into(),
                    kind: "lora".into(),
                    created_at: String::new(),
                },
                run_name: "grpo-arith".into(),
            }],
            evaluations: Vec::new(),
        };
        assert_eq!(label_of(Some(&catalog), "7"), "#3 grpo-arith · step 40");
        assert_eq!(label_of(Some(&catalog), "3:40"), "#3 grpo-arith · step 40");
        assert_eq!(label_of(Some(&catalog), "8"), "checkpoint 8");
        assert_eq!(label_of(None, "/models/a/m.gguf"), "m.gguf");
        assert_eq!(run_step(Some(&catalog), "7"), Some((3, 40)));
        assert_eq!(run_step(Some(&catalog), "builtin:tiny-reasoner"), None);
    }
}
