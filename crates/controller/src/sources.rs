//! Sources shared by every Application: one fetch per repository per reuse window
//! (concurrent reconciles wait for the fetch in flight instead of starting another),
//! one extracted tree per commit, and rendered output cached by (commit, path,
//! renderer options, namespace) so an unchanged revision is not rendered again.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use capstan_core::Revision;
use capstan_engine::render::{self, DesiredObject, RenderError, RenderOptions, Scopes};
use capstan_engine::source::git::CheckoutError;
use capstan_engine::source::{Checkout, GitCache, GitError, GitSource, confine};

use crate::metrics::Metrics;

/// Why a source could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Fetching or resolving failed.
    #[error(transparent)]
    Git(#[from] GitError),
    /// Extracting the tree failed, or a path escapes it.
    #[error(transparent)]
    Checkout(#[from] CheckoutError),
    /// Rendering failed.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// A blocking task panicked.
    #[error("internal error: {0}")]
    Internal(String),
}

/// How long the results of a fetch are reused, and how many renders are kept.
#[derive(Debug, Clone)]
pub struct SourceOptions {
    /// A repository fetched less than this long ago is not fetched again.
    pub fetch_reuse: Duration,
    /// Rendered desired sets kept (least recently used go first).
    pub render_cache_entries: usize,
    /// Extracted trees kept (one per commit).
    pub checkouts: usize,
}

impl Default for SourceOptions {
    fn default() -> Self {
        SourceOptions {
            fetch_reuse: Duration::from_secs(5),
            // One entry per Application of a large fleet: a plain directory's render
            // of a few objects costs a few KiB, so 16,384 entries stay well inside the
            // controller's budget of 30 KiB per Application (docs/benchmarks.md).
            render_cache_entries: 16_384,
            checkouts: 8,
        }
    }
}

type RenderKey = (String, String, String, String);

/// The shared source state of a controller.
pub struct Sources {
    git: Arc<GitCache>,
    opts: SourceOptions,
    fetches: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Instant>>>>>,
    trees: Mutex<VecDeque<(String, Arc<Checkout>)>>,
    tree_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    renders: Mutex<RenderCache>,
    counters: Mutex<Counters>,
    metrics: Arc<Metrics>,
}

/// What the caches did, for tests and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Fetches that went to the remote.
    pub fetches: u64,
    /// Fetches answered by a recent one.
    pub fetches_reused: u64,
    /// Renders run.
    pub renders: u64,
    /// Renders answered from the cache.
    pub renders_cached: u64,
}

#[derive(Default)]
struct RenderCache {
    entries: HashMap<RenderKey, (Arc<Vec<DesiredObject>>, u64)>,
    tick: u64,
    /// One lock per render in progress: Applications that need the same render at
    /// once wait for the first instead of rendering it again.
    in_flight: HashMap<RenderKey, Arc<tokio::sync::Mutex<()>>>,
}

impl RenderCache {
    fn hit(&mut self, key: &RenderKey) -> Option<Arc<Vec<DesiredObject>>> {
        self.tick += 1;
        let tick = self.tick;
        let (objs, used) = self.entries.get_mut(key)?;
        *used = tick;
        Some(objs.clone())
    }

    /// Keep a render; over `limit` entries, evict the least recently used eighth at
    /// once, so eviction stays cheap.
    fn insert(&mut self, key: RenderKey, objs: Arc<Vec<DesiredObject>>, limit: usize) {
        self.tick += 1;
        self.entries.insert(key, (objs, self.tick));
        if self.entries.len() <= limit {
            return;
        }
        let mut ages: Vec<(u64, RenderKey)> = self
            .entries
            .iter()
            .map(|(k, (_, t))| (*t, k.clone()))
            .collect();
        ages.sort_by_key(|(t, _)| *t);
        let drop_n = (self.entries.len() - limit).max(limit / 8).min(ages.len());
        for (_, k) in ages.into_iter().take(drop_n) {
            self.entries.remove(&k);
        }
    }
}

impl Sources {
    /// Sources over a Git cache directory.
    pub fn new(git_cache_dir: PathBuf, opts: SourceOptions) -> Self {
        Sources {
            git: Arc::new(GitCache::new(git_cache_dir)),
            opts,
            fetches: Mutex::default(),
            trees: Mutex::default(),
            tree_locks: Mutex::default(),
            renders: Mutex::default(),
            counters: Mutex::default(),
            metrics: Arc::default(),
        }
    }

    /// Record the fetches that go to the remote in `metrics`
    /// (`capstan_git_fetch_duration_seconds`, `capstan_git_requests_total`).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// What the caches did so far.
    pub fn counters(&self) -> Counters {
        *self.counters.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn count(&self, f: impl FnOnce(&mut Counters)) {
        f(&mut self.counters.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// Fetch a repository unless it was fetched within the reuse window; callers
    /// arriving while a fetch runs wait for it and reuse its result.
    pub async fn fetch(&self, src: &GitSource, force: bool) -> Result<(), SourceError> {
        let slot = {
            let mut map = self.fetches.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(src.display_url()).or_default().clone()
        };
        let mut last = slot.lock().await;
        if !force && last.is_some_and(|t| t.elapsed() < self.opts.fetch_reuse) {
            self.count(|c| c.fetches_reused += 1);
            return Ok(());
        }
        let git = self.git.clone();
        let s = src.clone();
        let started = Instant::now();
        let fetched = tokio::task::spawn_blocking(move || git.fetch(&s))
            .await
            .map_err(|e| SourceError::Internal(e.to_string()))?;
        self.metrics
            .git_fetch(&src.url, started.elapsed(), fetched.is_ok());
        fetched?;
        *last = Some(Instant::now());
        self.count(|c| c.fetches += 1);
        Ok(())
    }

    /// Resolve a revision in the fetched repository.
    pub async fn resolve(&self, src: &GitSource, revision: &str) -> Result<Revision, SourceError> {
        let git = self.git.clone();
        let (s, r) = (src.clone(), revision.to_string());
        Ok(tokio::task::spawn_blocking(move || git.resolve(&s, &r))
            .await
            .map_err(|e| SourceError::Internal(e.to_string()))??)
    }

    /// The whole tree of a commit, extracted once and shared.
    pub async fn tree(
        &self,
        src: &GitSource,
        revision: &Revision,
    ) -> Result<Arc<Checkout>, SourceError> {
        let key = format!("{}@{}", src.display_url(), revision.id);
        if let Some(t) = self.cached_tree(&key) {
            return Ok(t);
        }
        let lock = {
            let mut locks = self.tree_locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(key.clone()).or_default().clone()
        };
        let _guard = lock.lock().await;
        if let Some(t) = self.cached_tree(&key) {
            return Ok(t);
        }
        let git = self.git.clone();
        let (s, r) = (src.clone(), revision.clone());
        let tree =
            tokio::task::spawn_blocking(move || git.checkout(&s, &r, std::path::Path::new(".")))
                .await
                .map_err(|e| SourceError::Internal(e.to_string()))??;
        let tree = Arc::new(tree);
        let mut trees = self.trees.lock().unwrap_or_else(|p| p.into_inner());
        trees.push_back((key, tree.clone()));
        while trees.len() > self.opts.checkouts.max(1) {
            trees.pop_front();
        }
        Ok(tree)
    }

    fn cached_tree(&self, key: &str) -> Option<Arc<Checkout>> {
        let trees = self.trees.lock().unwrap_or_else(|p| p.into_inner());
        trees.iter().find(|(k, _)| k == key).map(|(_, t)| t.clone())
    }

    /// The desired set of `path` at `revision`, rendered once per (commit, path,
    /// options, namespace).
    pub async fn desired(
        &self,
        src: &GitSource,
        revision: &Revision,
        path: &str,
        opts: &RenderOptions,
        namespace: &str,
        scopes: &Scopes,
    ) -> Result<Arc<Vec<DesiredObject>>, SourceError> {
        let key: RenderKey = (
            format!("{}@{}", src.display_url(), revision.id),
            path.to_string(),
            format!("{opts:?}"),
            namespace.to_string(),
        );
        let in_flight = {
            let mut cache = self.renders.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(objs) = cache.hit(&key) {
                drop(cache);
                self.count(|c| c.renders_cached += 1);
                return Ok(objs);
            }
            cache.in_flight.entry(key.clone()).or_default().clone()
        };
        let _rendering = in_flight.lock().await;
        let done = self
            .renders
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .hit(&key);
        if let Some(objs) = done {
            // rendered by the Application that held the lock
            self.count(|c| c.renders_cached += 1);
            return Ok(objs);
        }
        let result = self
            .render(src, revision, path, opts, namespace, scopes)
            .await;
        let mut cache = self.renders.lock().unwrap_or_else(|p| p.into_inner());
        cache.in_flight.remove(&key);
        let objs = result?;
        cache.insert(key, objs.clone(), self.opts.render_cache_entries);
        Ok(objs)
    }

    async fn render(
        &self,
        src: &GitSource,
        revision: &Revision,
        path: &str,
        opts: &RenderOptions,
        namespace: &str,
        scopes: &Scopes,
    ) -> Result<Arc<Vec<DesiredObject>>, SourceError> {
        let tree = self.tree(src, revision).await?;
        confine::check_tree(tree.root(), std::path::Path::new(path))
            .map_err(CheckoutError::from)?;
        let view = Checkout::existing(
            tree.root().to_path_buf(),
            PathBuf::from(path),
            revision.clone(),
        );
        let objs = Arc::new(render::render(&view, opts, namespace, scopes).await?);
        self.count(|c| c.renders += 1);
        Ok(objs)
    }
}
