//! The studio's views, one module each. The left panel switches between them.

pub mod playground;

use serde::{Deserialize, Serialize};

/// A view the left panel can select.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum View {
    /// Chat with a model; tokens coloured by entropy as they stream.
    #[default]
    Playground,
}

impl View {
    /// Every view, in the order the left panel lists them.
    pub const ALL: [Self; 1] = [Self::Playground];

    pub fn title(self) -> &'static str {
        match self {
            Self::Playground => "Playground",
        }
    }
}
