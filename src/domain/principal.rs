//! Who a request speaks for: the token's device and user, and the user's role in each scope.

use super::{Role, ScopeId};
use std::{collections::HashMap, sync::Arc};
use uuid::Uuid;

/// The blake3 hash under which a token is stored.
pub type TokenHash = [u8; 32];

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub token_id: Uuid,
    pub device_id: Uuid,
    pub user_id: Uuid,
    pub roles: Arc<HashMap<ScopeId, Role>>,
}

impl Principal {
    /// The caller's role in `scope`, or `None` when the scope is not theirs (answered as 404).
    pub fn role_in(&self, scope: &ScopeId) -> Option<Role> {
        self.roles.get(scope).copied()
    }
}
