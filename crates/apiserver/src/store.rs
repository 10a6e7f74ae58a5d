//! Object storage: the current objects in memory, every write persisted to SQLite
//! before it is acknowledged, one global `resourceVersion` counter, and a bounded
//! history of events that watches resume from.
//!
//! All writes go through [`Store::transact`]: the closure reads and stages writes under
//! one lock, and the staged writes are committed to SQLite in one transaction, then
//! made visible in memory and broadcast to watchers, in resourceVersion order. A write
//! that fails to persist changes nothing.
//!
//! Durability: SQLite runs in WAL mode with `synchronous=NORMAL`. A committed
//! transaction is in the WAL file before the reply is sent, so it survives the process
//! being killed (`kill -9`); it is not guaranteed to survive a power loss of the host.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;
use tokio::sync::broadcast;

use crate::error::{ApiError, Result};
use crate::meta;
use crate::registry::GroupResource;

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Created.
    Added,
    /// Changed.
    Modified,
    /// Deleted.
    Deleted,
}

impl EventType {
    /// The watch event `type` string.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One committed change.
#[derive(Debug)]
pub struct Event {
    /// What happened.
    pub kind: EventType,
    /// Resource of the object.
    pub gr: GroupResource,
    /// resourceVersion of the change.
    pub rv: u64,
    /// The object after the change (for deletes: its last state, with the delete's resourceVersion).
    pub object: Arc<Value>,
    /// The object before the change, if it existed.
    pub previous: Option<Arc<Value>>,
}

/// The events after a resourceVersion still in history, and a receiver for later ones.
pub type Resumed = (Vec<Arc<Event>>, broadcast::Receiver<Arc<Event>>);

/// Identity of a stored object.
pub type ObjectKey = (GroupResource, String, String);

type Objects = BTreeMap<(String, String), Arc<Value>>;

enum Write {
    Put {
        gr: GroupResource,
        ns: String,
        name: String,
        obj: Arc<Value>,
    },
    Delete {
        gr: GroupResource,
        ns: String,
        name: String,
        last: Arc<Value>,
    },
}

struct Inner {
    rv: u64,
    objects: HashMap<GroupResource, Objects>,
    history: VecDeque<Arc<Event>>,
    /// Events with a resourceVersion above this are all in `history`.
    compacted: u64,
    history_limit: usize,
    db: Option<Connection>,
    uids: HashMap<String, ObjectKey>,
    dependents: HashMap<String, BTreeSet<ObjectKey>>,
}

thread_local! {
    /// Set while a transaction closure runs on this thread: the store lock is held,
    /// so locking it again would deadlock.
    static IN_TXN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The object store.
pub struct Store {
    inner: Mutex<Inner>,
    tx: broadcast::Sender<Arc<Event>>,
}

/// Capacity of the broadcast channel; a watcher further behind than this is closed
/// with 410 Expired and must re-list.
const BROADCAST_CAPACITY: usize = 16 * 1024;

impl Store {
    fn lock(&self) -> parking_lot::MutexGuard<'_, Inner> {
        assert!(
            !IN_TXN.with(std::cell::Cell::get),
            "store accessed from inside a transaction: read through the Txn instead"
        );
        self.inner.lock()
    }

    /// A store in memory only.
    pub fn in_memory(history_limit: usize) -> Self {
        Store::with_db(None, history_limit)
    }

    /// A store persisted in `dir/capstan-apiserver.db`, loading what is already there.
    pub fn open(dir: &Path, history_limit: usize) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        let path = dir.join("capstan-apiserver.db");
        let conn = Connection::open(&path).map_err(|source| StoreError::Sqlite {
            path: path.display().to_string(),
            source,
        })?;
        let sql = |source| StoreError::Sqlite {
            path: path.display().to_string(),
            source,
        };
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             PRAGMA synchronous=NORMAL;
             PRAGMA wal_autocheckpoint=0;
             PRAGMA busy_timeout=10000;
             CREATE TABLE IF NOT EXISTS objects (
               resource TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,
               rv INTEGER NOT NULL, body BLOB NOT NULL,
               PRIMARY KEY (resource, namespace, name)) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);",
        )
        .map_err(sql)?;
        let mut max_rv: u64 = conn
            .query_row("SELECT value FROM meta WHERE key = 'rv'", [], |r| {
                r.get::<_, i64>(0)
            })
            .optional()
            .map_err(sql)?
            .unwrap_or(0) as u64;
        let mut loaded = Vec::new();
        {
            let mut stmt = conn
                .prepare("SELECT resource, body, rv FROM objects")
                .map_err(sql)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Vec<u8>>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                })
                .map_err(sql)?;
            for row in rows {
                let (resource, body, rv) = row.map_err(sql)?;
                let obj: Value =
                    serde_json::from_slice(&body).map_err(|e| StoreError::Corrupt {
                        path: path.display().to_string(),
                        detail: format!("object of {resource}: {e}"),
                    })?;
                let gr = match resource.split_once('.') {
                    Some((r, g)) => GroupResource::new(g, r),
                    None => GroupResource::new("", &resource),
                };
                max_rv = max_rv.max(rv as u64);
                loaded.push((gr, obj));
            }
        }
        spawn_checkpointer(&path);
        let store = Store::with_db(Some(conn), history_limit);
        {
            let mut inner = store.inner.lock();
            inner.rv = max_rv;
            inner.compacted = max_rv;
            for (gr, obj) in loaded {
                let key = (
                    gr.clone(),
                    meta::namespace(&obj).to_string(),
                    meta::name(&obj).to_string(),
                );
                let obj = Arc::new(obj);
                inner.index(&key, &obj);
                inner
                    .objects
                    .entry(gr)
                    .or_default()
                    .insert((key.1, key.2), obj);
            }
        }
        Ok(store)
    }

    fn with_db(db: Option<Connection>, history_limit: usize) -> Self {
        let (tx, _) = broadcast::channel(BROADCAST_CAPACITY);
        Store {
            inner: Mutex::new(Inner {
                rv: 0,
                objects: HashMap::new(),
                history: VecDeque::new(),
                compacted: 0,
                history_limit: history_limit.max(1),
                db,
                uids: HashMap::new(),
                dependents: HashMap::new(),
            }),
            tx,
        }
    }

    /// The latest committed resourceVersion.
    pub fn current_rv(&self) -> u64 {
        self.lock().rv
    }

    /// One object.
    pub fn get(&self, gr: &GroupResource, ns: &str, name: &str) -> Option<Arc<Value>> {
        self.lock().get(gr, ns, name)
    }

    /// Objects of a resource (in one namespace, or all), ordered by namespace and name,
    /// with the resourceVersion they were read at.
    pub fn list(&self, gr: &GroupResource, ns: Option<&str>) -> (Vec<Arc<Value>>, u64) {
        let inner = self.lock();
        (inner.list(gr, ns), inner.rv)
    }

    /// Visit the objects of a resource (in one namespace, or all) in (namespace, name)
    /// order, starting strictly after the key `after`; returns the resourceVersion read at.
    pub fn scan(
        &self,
        gr: &GroupResource,
        ns: Option<&str>,
        after: Option<(&str, &str)>,
        mut visit: impl FnMut(&Arc<Value>),
    ) -> u64 {
        use std::ops::Bound;
        let inner = self.lock();
        if let Some(objs) = inner.objects.get(gr) {
            let start = match (after, ns) {
                (Some((a_ns, a_name)), _) => {
                    Bound::Excluded((a_ns.to_string(), a_name.to_string()))
                }
                (None, Some(n)) => Bound::Included((n.to_string(), String::new())),
                (None, None) => Bound::Unbounded,
            };
            for ((obj_ns, _), obj) in objs.range((start, Bound::Unbounded)) {
                if ns.is_some_and(|n| n != obj_ns) {
                    if ns.is_some_and(|n| obj_ns.as_str() > n) {
                        break;
                    }
                    continue;
                }
                visit(obj);
            }
        }
        inner.rv
    }

    /// Every resource that holds objects in namespace `ns`, with those objects.
    pub fn list_namespace(&self, ns: &str) -> Vec<(GroupResource, Vec<Arc<Value>>)> {
        let inner = self.lock();
        let mut out = Vec::new();
        for gr in inner.objects.keys() {
            let objs = inner.list(gr, Some(ns));
            if !objs.is_empty() {
                out.push((gr.clone(), objs));
            }
        }
        out
    }

    /// Objects whose ownerReferences name `uid`.
    pub fn dependents_of(&self, uid: &str) -> Vec<(GroupResource, Arc<Value>)> {
        let inner = self.lock();
        inner
            .dependents
            .get(uid)
            .map(|keys| {
                keys.iter()
                    .filter_map(|(gr, ns, name)| inner.get(gr, ns, name).map(|o| (gr.clone(), o)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The object with this uid, if it exists.
    pub fn get_by_uid(&self, uid: &str) -> Option<(GroupResource, Arc<Value>)> {
        let inner = self.lock();
        let (gr, ns, name) = inner.uids.get(uid)?;
        inner.get(gr, ns, name).map(|o| (gr.clone(), o))
    }

    /// Whether an object with this uid exists.
    pub fn uid_exists(&self, uid: &str) -> bool {
        self.lock().uids.contains_key(uid)
    }

    /// Every object that has ownerReferences, for a garbage-collection sweep.
    pub fn objects_with_owners(&self) -> Vec<(GroupResource, Arc<Value>)> {
        let inner = self.lock();
        let mut keys: BTreeSet<&ObjectKey> = BTreeSet::new();
        for set in inner.dependents.values() {
            keys.extend(set.iter());
        }
        keys.into_iter()
            .filter_map(|(gr, ns, name)| inner.get(gr, ns, name).map(|o| (gr.clone(), o)))
            .collect()
    }

    /// Every object of every resource (for start-up sweeps).
    pub fn all_objects(&self) -> Vec<(GroupResource, Arc<Value>)> {
        let inner = self.lock();
        inner
            .objects
            .iter()
            .flat_map(|(gr, objs)| objs.values().map(move |o| (gr.clone(), o.clone())))
            .collect()
    }

    /// Read and write atomically: `f` sees the store as of now plus its own staged
    /// writes; if it returns `Ok`, every staged write is committed and broadcast.
    pub fn transact<T>(&self, f: impl FnOnce(&mut Txn<'_>) -> Result<T>) -> Result<T> {
        let mut inner = self.lock();
        let mut txn = Txn {
            inner: &inner,
            staged: Vec::new(),
            next_rv: inner.rv,
        };
        let out = {
            struct Reset;
            impl Drop for Reset {
                fn drop(&mut self) {
                    IN_TXN.with(|t| t.set(false));
                }
            }
            IN_TXN.with(|t| t.set(true));
            let _reset = Reset;
            f(&mut txn)?
        };
        let staged = std::mem::take(&mut txn.staged);
        let last_rv = txn.next_rv;
        if staged.is_empty() {
            return Ok(out);
        }
        inner.persist(&staged, last_rv)?;
        inner.rv = last_rv;
        for w in staged {
            let event = inner.apply(w);
            let event = Arc::new(event);
            inner.history.push_back(event.clone());
            while inner.history.len() > inner.history_limit {
                if let Some(old) = inner.history.pop_front() {
                    inner.compacted = old.rv;
                }
            }
            // No receiver is fine: nobody is watching.
            let _ = self.tx.send(event);
        }
        Ok(out)
    }

    /// Start watching: the events after `since` still in history, and a receiver for
    /// everything later. 410 Expired when history no longer reaches back to `since`.
    pub fn watch_from(&self, since: u64) -> Result<Resumed> {
        let inner = self.lock();
        if since < inner.compacted {
            return Err(ApiError::gone(format!(
                "too old resource version: {since} ({})",
                inner.compacted + 1
            )));
        }
        let backlog = inner
            .history
            .iter()
            .filter(|e| e.rv > since)
            .cloned()
            .collect();
        Ok((backlog, self.tx.subscribe()))
    }

    /// Start watching from now: the current objects of `gr` (for synthetic ADDED events),
    /// the resourceVersion they were read at, and a receiver for later events.
    pub fn snapshot_and_watch(
        &self,
        gr: &GroupResource,
        ns: Option<&str>,
    ) -> (Vec<Arc<Value>>, u64, broadcast::Receiver<Arc<Event>>) {
        let inner = self.lock();
        (inner.list(gr, ns), inner.rv, self.tx.subscribe())
    }

    /// A receiver of every event committed from now on (for internal controllers).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }
}

/// Checkpoint the WAL from a second connection, off the write path: a checkpoint run
/// by the committing connection would stall every writer behind the store lock.
/// The thread ends when the database file can no longer be opened.
fn spawn_checkpointer(path: &Path) {
    let path = path.to_path_buf();
    std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || {
            let Ok(conn) = Connection::open(&path) else {
                return;
            };
            let _ = conn.busy_timeout(std::time::Duration::from_secs(10));
            loop {
                std::thread::sleep(std::time::Duration::from_millis(500));
                if !path.exists() {
                    return;
                }
                let wal_pages: i64 = conn
                    .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))
                    .unwrap_or(0);
                if wal_pages > 20_000 {
                    // The WAL keeps growing under constant writes; truncate it when possible.
                    let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
                }
            }
        })
        .expect("spawning the checkpoint thread");
}

impl Inner {
    fn get(&self, gr: &GroupResource, ns: &str, name: &str) -> Option<Arc<Value>> {
        self.objects
            .get(gr)
            .and_then(|m| m.get(&(ns.to_string(), name.to_string())))
            .cloned()
    }

    fn list(&self, gr: &GroupResource, ns: Option<&str>) -> Vec<Arc<Value>> {
        let Some(objs) = self.objects.get(gr) else {
            return Vec::new();
        };
        match ns {
            None => objs.values().cloned().collect(),
            Some(ns) => objs
                .range((ns.to_string(), String::new())..)
                .take_while(|((n, _), _)| n == ns)
                .map(|(_, v)| v.clone())
                .collect(),
        }
    }

    fn persist(&mut self, staged: &[Write], last_rv: u64) -> Result<()> {
        let Some(db) = self.db.as_mut() else {
            return Ok(());
        };
        let res: rusqlite::Result<()> = (|| {
            let tx = db.transaction()?;
            {
                let mut put = tx.prepare_cached(
                    "INSERT INTO objects (resource, namespace, name, rv, body) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (resource, namespace, name) DO UPDATE SET rv = excluded.rv, body = excluded.body",
                )?;
                let mut del = tx.prepare_cached(
                    "DELETE FROM objects WHERE resource = ?1 AND namespace = ?2 AND name = ?3",
                )?;
                for w in staged {
                    match w {
                        Write::Put { gr, ns, name, obj } => {
                            // never an empty body: a failed encoding fails the write
                            let body = serde_json::to_vec(obj.as_ref()).map_err(|e| {
                                rusqlite::Error::ToSqlConversionFailure(Box::new(e))
                            })?;
                            put.execute(params![
                                gr.storage_name(),
                                ns,
                                name,
                                meta::resource_version(obj) as i64,
                                body
                            ])?;
                        }
                        Write::Delete { gr, ns, name, .. } => {
                            del.execute(params![gr.storage_name(), ns, name])?;
                        }
                    }
                }
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES ('rv', ?1) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    params![last_rv as i64],
                )?;
            }
            tx.commit()
        })();
        res.map_err(|e| ApiError::internal(format!("storage write failed: {e}")))
    }

    fn apply(&mut self, w: Write) -> Event {
        match w {
            Write::Put { gr, ns, name, obj } => {
                let key = (gr.clone(), ns.clone(), name.clone());
                let previous = self
                    .objects
                    .entry(gr.clone())
                    .or_default()
                    .insert((ns, name), obj.clone());
                if let Some(prev) = &previous {
                    self.unindex(&key, prev);
                }
                self.index(&key, &obj);
                Event {
                    kind: if previous.is_some() {
                        EventType::Modified
                    } else {
                        EventType::Added
                    },
                    rv: meta::resource_version(&obj),
                    gr,
                    object: obj,
                    previous,
                }
            }
            Write::Delete { gr, ns, name, last } => {
                let key = (gr.clone(), ns.clone(), name.clone());
                let previous = self
                    .objects
                    .get_mut(&gr)
                    .and_then(|m| m.remove(&(ns, name)));
                if let Some(prev) = &previous {
                    self.unindex(&key, prev);
                }
                Event {
                    kind: EventType::Deleted,
                    rv: meta::resource_version(&last),
                    gr,
                    object: last,
                    previous,
                }
            }
        }
    }

    fn index(&mut self, key: &ObjectKey, obj: &Value) {
        let uid = meta::uid(obj);
        if !uid.is_empty() {
            self.uids.insert(uid.to_string(), key.clone());
        }
        for owner in meta::owner_uids(obj) {
            self.dependents
                .entry(owner)
                .or_default()
                .insert(key.clone());
        }
    }

    fn unindex(&mut self, key: &ObjectKey, obj: &Value) {
        let uid = meta::uid(obj);
        if self.uids.get(uid) == Some(key) {
            self.uids.remove(uid);
        }
        for owner in meta::owner_uids(obj) {
            if let Some(set) = self.dependents.get_mut(&owner) {
                set.remove(key);
                if set.is_empty() {
                    self.dependents.remove(&owner);
                }
            }
        }
    }
}

/// Reads and staged writes of one [`Store::transact`] call.
pub struct Txn<'a> {
    inner: &'a Inner,
    staged: Vec<Write>,
    next_rv: u64,
}

impl Txn<'_> {
    /// One object, as staged by this transaction or as committed.
    pub fn get(&self, gr: &GroupResource, ns: &str, name: &str) -> Option<Arc<Value>> {
        for w in self.staged.iter().rev() {
            match w {
                Write::Put {
                    gr: g,
                    ns: n,
                    name: m,
                    obj,
                } if g == gr && n == ns && m == name => {
                    return Some(obj.clone());
                }
                Write::Delete {
                    gr: g,
                    ns: n,
                    name: m,
                    ..
                } if g == gr && n == ns && m == name => {
                    return None;
                }
                _ => {}
            }
        }
        self.inner.get(gr, ns, name)
    }

    /// Committed objects of a resource (staged writes not included).
    pub fn list(&self, gr: &GroupResource, ns: Option<&str>) -> Vec<Arc<Value>> {
        self.inner.list(gr, ns)
    }

    /// The resourceVersion the next staged write will get.
    pub fn peek_rv(&self) -> u64 {
        self.next_rv + 1
    }

    /// Stage a create or update; sets `metadata.resourceVersion` and returns the stored object.
    pub fn put(&mut self, gr: &GroupResource, mut obj: Value) -> Arc<Value> {
        self.next_rv += 1;
        meta::metadata_mut(&mut obj)
            .insert("resourceVersion".into(), self.next_rv.to_string().into());
        let obj = Arc::new(obj);
        self.staged.push(Write::Put {
            gr: gr.clone(),
            ns: meta::namespace(&obj).to_string(),
            name: meta::name(&obj).to_string(),
            obj: obj.clone(),
        });
        obj
    }

    /// Stage a delete; `last` is the object's final state (given the delete's resourceVersion).
    pub fn delete(&mut self, gr: &GroupResource, mut last: Value) -> Arc<Value> {
        self.next_rv += 1;
        meta::metadata_mut(&mut last)
            .insert("resourceVersion".into(), self.next_rv.to_string().into());
        let last = Arc::new(last);
        self.staged.push(Write::Delete {
            gr: gr.clone(),
            ns: meta::namespace(&last).to_string(),
            name: meta::name(&last).to_string(),
            last: last.clone(),
        });
        last
    }
}

/// Failure to open the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory could not be created.
    #[error("cannot create data directory {path}")]
    Io {
        /// The directory.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// SQLite failed.
    #[error("SQLite error on {path}")]
    Sqlite {
        /// The database file.
        path: String,
        /// The cause.
        #[source]
        source: rusqlite::Error,
    },
    /// A stored object could not be read back.
    #[error("corrupt object in {path}: {detail}")]
    Corrupt {
        /// The database file.
        path: String,
        /// What was wrong.
        detail: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cm(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default"}})
    }

    #[test]
    fn writes_persist_and_resource_versions_keep_growing() {
        let dir = tempfile::tempdir().unwrap();
        let gr = GroupResource::new("", "configmaps");
        {
            let store = Store::open(dir.path(), 100).unwrap();
            store.transact(|t| Ok(t.put(&gr, cm("a")))).unwrap();
            store.transact(|t| Ok(t.put(&gr, cm("b")))).unwrap();
            let b = store.get(&gr, "default", "b").unwrap();
            store.transact(|t| Ok(t.delete(&gr, (*b).clone()))).unwrap();
            assert_eq!(store.current_rv(), 3);
        }
        let store = Store::open(dir.path(), 100).unwrap();
        assert_eq!(store.current_rv(), 3);
        assert!(store.get(&gr, "default", "a").is_some());
        assert!(store.get(&gr, "default", "b").is_none());
        let c = store.transact(|t| Ok(t.put(&gr, cm("c")))).unwrap();
        assert_eq!(meta::resource_version(&c), 4);
    }

    #[test]
    fn failed_transaction_changes_nothing() {
        let store = Store::in_memory(10);
        let gr = GroupResource::new("", "configmaps");
        let res: Result<()> = store.transact(|t| {
            t.put(&gr, cm("a"));
            Err(ApiError::bad_request("no"))
        });
        assert!(res.is_err());
        assert!(store.get(&gr, "default", "a").is_none());
        assert_eq!(store.current_rv(), 0);
    }

    #[test]
    fn watch_from_an_expired_version_is_gone() {
        let store = Store::in_memory(2);
        let gr = GroupResource::new("", "configmaps");
        for n in ["a", "b", "c", "d"] {
            store.transact(|t| Ok(t.put(&gr, cm(n)))).unwrap();
        }
        let (backlog, _) = store.watch_from(2).unwrap();
        assert_eq!(backlog.len(), 2);
        let err = store.watch_from(1).unwrap_err();
        assert_eq!(err.code, 410);
    }
}
