//! Authorization with the semantics of Kafka's `StandardAuthorizer`: ACL bindings on
//! topics, groups, the cluster, transactional ids, delegation tokens and users, LITERAL
//! (with `*` as the wildcard) and PREFIXED patterns, DENY before ALLOW, the implied
//! operations (READ, WRITE, DELETE and ALTER imply DESCRIBE; ALTER_CONFIGS implies
//! DESCRIBE_CONFIGS), `super.users`, `allow.everyone.if.no.acl.found`, and
//! `authorizeByResourceType` (KIP-679) for checks that ask "on any resource of this type".
//!
//! Owns `.strata/acls.yaml` in the data directory: every binding, replaced atomically on
//! each change. Checks read an in-memory index under a read lock that writers hold only to
//! swap in a rebuilt index, so a change applies to every connection at once and the
//! produce/fetch path never waits on the disk.

pub mod acl;
#[cfg(test)]
mod tests;

pub use acl::{AclBinding, AclFilter, Operation, PatternType, Permission, ResourceType};

use super::Principal;
use acl::WILDCARD;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

/// The class names that select this authorizer: KRaft's and the older ZooKeeper-era one,
/// which Strata treats alike.
pub const STANDARD_AUTHORIZER: &str = "org.apache.kafka.metadata.authorizer.StandardAuthorizer";
pub const ACL_AUTHORIZER: &str = "kafka.security.authorizer.AclAuthorizer";

/// The file name under `.strata/`.
const ACLS_FILE: &str = "acls.yaml";

/// What the configuration asks for.
#[derive(Clone, Debug, Default)]
pub struct AuthorizerSettings {
    pub super_users: HashSet<Principal>,
    pub allow_everyone_if_no_acl_found: bool,
}

impl AuthorizerSettings {
    /// `super.users` as Kafka writes it: `User:a;User:b`.
    pub fn parse_super_users(value: &str) -> Result<HashSet<Principal>, String> {
        value
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                Principal::parse(s).ok_or_else(|| format!("super.users: {s:?} is not Type:name"))
            })
            .collect()
    }
}

#[derive(Serialize, Deserialize, Default)]
struct AclsFile {
    acls: Vec<AclBinding>,
}

/// One ACL as the checks read it: the principal split once so that a check compares
/// strings without formatting.
struct Entry {
    principal_kind: String,
    principal_name: String,
    host: String,
    operation: Operation,
    permission: Permission,
}

impl Entry {
    fn new(acl: &AclBinding) -> Self {
        let (kind, name) = acl
            .principal
            .split_once(':')
            .unwrap_or(("", &acl.principal));
        Entry {
            principal_kind: kind.into(),
            principal_name: name.into(),
            host: acl.host.clone(),
            operation: acl.operation,
            permission: acl.permission,
        }
    }

    /// The principal itself or `User:*`.
    fn applies_to(&self, principal: &Principal, host: &str) -> bool {
        ((self.principal_kind == principal.kind && self.principal_name == principal.name)
            || (self.principal_kind == "User" && self.principal_name == WILDCARD))
            && (self.host == WILDCARD || self.host == host)
    }

    /// Kafka's `findResult`: an ALLOW for `op` counts the implied operations, a DENY only
    /// the operation itself (or ALL).
    fn verdict(&self, principal: &Principal, host: &str, op: Operation) -> Option<Permission> {
        if !self.applies_to(principal, host) {
            return None;
        }
        let matches = self.operation == Operation::All
            || match (self.permission, op) {
                (Permission::Allow, Operation::Describe) => matches!(
                    self.operation,
                    Operation::Describe
                        | Operation::Read
                        | Operation::Write
                        | Operation::Delete
                        | Operation::Alter
                ),
                (Permission::Allow, Operation::DescribeConfigs) => matches!(
                    self.operation,
                    Operation::DescribeConfigs | Operation::AlterConfigs
                ),
                _ => self.operation == op,
            };
        matches.then_some(self.permission)
    }
}

/// The ACLs of one resource type, by pattern.
#[derive(Default)]
struct TypeIndex {
    /// Literal names, `*` included.
    literal: HashMap<String, Vec<Entry>>,
    prefixed: HashMap<String, Vec<Entry>>,
    /// The lengths of the prefixes present, so a check looks up only those.
    prefix_lens: BTreeSet<usize>,
}

/// Every binding, and the index the checks read.
#[derive(Default)]
struct AclIndex {
    all: BTreeSet<AclBinding>,
    types: HashMap<ResourceType, TypeIndex>,
}

impl AclIndex {
    fn build(all: BTreeSet<AclBinding>) -> Self {
        let mut types: HashMap<ResourceType, TypeIndex> = HashMap::new();
        for acl in &all {
            let t = types.entry(acl.resource_type).or_default();
            let entry = Entry::new(acl);
            match acl.pattern_type {
                PatternType::Prefixed => {
                    t.prefix_lens.insert(acl.resource_name.len());
                    t.prefixed
                        .entry(acl.resource_name.clone())
                        .or_default()
                        .push(entry);
                }
                _ => t
                    .literal
                    .entry(acl.resource_name.clone())
                    .or_default()
                    .push(entry),
            }
        }
        AclIndex { all, types }
    }

    /// Kafka's `findAclRule`: DENY wins over ALLOW; `None` when no ACL names the resource
    /// at all (whoever it is for), which `allow.everyone.if.no.acl.found` then decides.
    fn decide(
        &self,
        principal: &Principal,
        host: &str,
        op: Operation,
        rt: ResourceType,
        name: &str,
    ) -> Option<bool> {
        let t = self.types.get(&rt)?;
        let literal = t.literal.get(name);
        let wildcard = if name == WILDCARD {
            None
        } else {
            t.literal.get(WILDCARD)
        };
        let prefixed = t
            .prefix_lens
            .iter()
            .take_while(|&&len| len <= name.len())
            .filter(|&&len| name.is_char_boundary(len))
            .filter_map(|&len| t.prefixed.get(&name[..len]));
        let mut any = false;
        let mut allowed = false;
        for entries in literal.into_iter().chain(wildcard).chain(prefixed) {
            for e in entries {
                any = true;
                match e.verdict(principal, host, op) {
                    Some(Permission::Deny) => return Some(false),
                    Some(Permission::Allow) => allowed = true,
                    _ => {}
                }
            }
        }
        any.then_some(allowed)
    }
}

/// The broker's authorizer: settings, the ACL file and the index.
pub struct Authorizer {
    settings: AuthorizerSettings,
    path: PathBuf,
    index: RwLock<Arc<AclIndex>>,
    /// Serialises changes, so two CreateAcls never lose each other's bindings.
    changes: Mutex<()>,
}

impl Authorizer {
    /// `None` when `authorizer.class.name` is empty; an error for a class Strata does not
    /// implement, so a cluster never runs open by mistake.
    pub fn from_config(
        class_name: &str,
        settings: AuthorizerSettings,
        meta_dir: &Path,
    ) -> anyhow::Result<Option<Self>> {
        match class_name.trim() {
            "" => Ok(None),
            STANDARD_AUTHORIZER | ACL_AUTHORIZER => Ok(Some(Self::open(meta_dir, settings)?)),
            other => anyhow::bail!(
                "authorizer.class.name={other} is not supported: use {STANDARD_AUTHORIZER} (or {ACL_AUTHORIZER}), or leave it empty for none"
            ),
        }
    }

    /// Loads the ACLs stored under `meta_dir` (none when the file does not exist).
    pub fn open(meta_dir: &Path, settings: AuthorizerSettings) -> anyhow::Result<Self> {
        let path = meta_dir.join(ACLS_FILE);
        let file: AclsFile = match std::fs::read_to_string(&path) {
            Ok(text) => serde_yaml::from_str(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => AclsFile::default(),
            Err(e) => return Err(anyhow::anyhow!("{}: {e}", path.display())),
        };
        for acl in &file.acls {
            acl.validate()
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        }
        tracing::info!(
            acls = file.acls.len(),
            super_users = settings.super_users.len(),
            "authorizer loaded"
        );
        Ok(Authorizer {
            settings,
            path,
            index: RwLock::new(Arc::new(AclIndex::build(file.acls.into_iter().collect()))),
            changes: Mutex::new(()),
        })
    }

    fn current(&self) -> Arc<AclIndex> {
        match self.index.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn is_super_user(&self, principal: &Principal) -> bool {
        self.settings.super_users.contains(principal)
    }

    /// May `principal`, connected from `host`, perform `op` on the named resource?
    pub fn authorize(
        &self,
        principal: &Principal,
        host: &str,
        op: Operation,
        rt: ResourceType,
        name: &str,
    ) -> bool {
        if self.is_super_user(principal) {
            return true;
        }
        let verdict = {
            let guard = match self.index.read() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            guard.decide(principal, host, op, rt, name)
        };
        let allowed = verdict.unwrap_or(self.settings.allow_everyone_if_no_acl_found);
        if !allowed {
            tracing::debug!(%principal, host, operation = %op, resource_type = %rt, resource = name, "denied");
        }
        allowed
    }

    /// Kafka's `authorizeByResourceType` (KIP-679): may `principal` perform `op` on at
    /// least one resource of type `rt`? An ALLOW counts unless a DENY on the same literal
    /// name or on a prefix of it overrides it; a literal `*` DENY refuses everything.
    /// Implied operations do not count here, as in Kafka.
    pub fn authorize_by_resource_type(
        &self,
        principal: &Principal,
        host: &str,
        op: Operation,
        rt: ResourceType,
    ) -> bool {
        // Kafka asks about a made-up name first, so super users and
        // allow.everyone.if.no.acl.found behave as for a named resource.
        if self.authorize(principal, host, op, rt, "hardcode") {
            return true;
        }
        let index = self.current();
        let Some(t) = index.types.get(&rt) else {
            return false;
        };
        let counts = |e: &Entry| {
            e.applies_to(principal, host) && (e.operation == op || e.operation == Operation::All)
        };
        let mut deny_literal = HashSet::new();
        let mut deny_prefixed = HashSet::new();
        let mut allow = Vec::new();
        for (name, entries) in &t.literal {
            for e in entries.iter().filter(|e| counts(e)) {
                match e.permission {
                    Permission::Deny if name == WILDCARD => return false,
                    Permission::Deny => {
                        deny_literal.insert(name.as_str());
                    }
                    Permission::Allow => allow.push((PatternType::Literal, name.as_str())),
                    _ => {}
                }
            }
        }
        for (name, entries) in &t.prefixed {
            for e in entries.iter().filter(|e| counts(e)) {
                match e.permission {
                    Permission::Deny => {
                        deny_prefixed.insert(name.as_str());
                    }
                    Permission::Allow => allow.push((PatternType::Prefixed, name.as_str())),
                    _ => {}
                }
            }
        }
        if allow
            .iter()
            .any(|&(pt, name)| pt == PatternType::Literal && name == WILDCARD)
        {
            return true;
        }
        allow.iter().any(|&(pt, name)| {
            if pt == PatternType::Literal && deny_literal.contains(name) {
                return false;
            }
            !name
                .char_indices()
                .map(|(i, c)| &name[..i + c.len_utf8()])
                .any(|prefix| deny_prefixed.contains(prefix))
        })
    }

    /// The `*_authorized_operations` bit field: the type's operations the principal may
    /// perform on the resource.
    pub fn authorized_operations(
        &self,
        principal: &Principal,
        host: &str,
        rt: ResourceType,
        name: &str,
    ) -> i32 {
        rt.supported_operations()
            .iter()
            .filter(|&&op| self.authorize(principal, host, op, rt, name))
            .fold(0, |bits, op| bits | (1 << op.code()))
    }

    /// Every binding the filter matches.
    pub fn describe(&self, filter: &AclFilter) -> Vec<AclBinding> {
        self.current()
            .all
            .iter()
            .filter(|acl| filter.matches(acl))
            .cloned()
            .collect()
    }

    /// Adds validated bindings (those present already stay as they are) and stores them.
    pub fn create(&self, bindings: &[AclBinding]) -> std::io::Result<()> {
        self.change(|all| {
            all.extend(bindings.iter().cloned());
        })
        .map(|_| ())
    }

    /// Removes what each filter matches; answers the removed bindings per filter.
    pub fn delete(&self, filters: &[AclFilter]) -> std::io::Result<Vec<Vec<AclBinding>>> {
        self.change(|all| {
            let matched: Vec<Vec<AclBinding>> = filters
                .iter()
                .map(|f| all.iter().filter(|a| f.matches(a)).cloned().collect())
                .collect();
            for acl in matched.iter().flatten() {
                all.remove(acl);
            }
            matched
        })
    }

    fn change<T>(&self, f: impl FnOnce(&mut BTreeSet<AclBinding>) -> T) -> std::io::Result<T> {
        let _serial = match self.changes.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut all = self.current().all.clone();
        let before = all.len();
        let out = f(&mut all);
        let unchanged = all.len() == before && all == self.current().all;
        if !unchanged {
            let yaml = serde_yaml::to_string(&AclsFile {
                acls: all.iter().cloned().collect(),
            })
            .map_err(std::io::Error::other)?;
            crate::checkpoint::write_atomically(&self.path, yaml.as_bytes())?;
            let index = Arc::new(AclIndex::build(all));
            match self.index.write() {
                Ok(mut g) => *g = index,
                Err(poisoned) => *poisoned.into_inner() = index,
            }
            tracing::info!("ACLs changed");
        }
        Ok(out)
    }
}
