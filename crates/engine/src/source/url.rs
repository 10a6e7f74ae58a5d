//! When two repository URLs name the same repository: a push webhook says
//! `https://github.com/org/repo`, the Application says `git@github.com:org/repo.git`.

/// The identity of a repository URL: host (with a port only when it is not the
/// scheme's default) and path, in lower case, without scheme, user, `.git` or a
/// trailing `/`. `https://GitHub.com/Org/Repo.git`, `ssh://git@github.com:22/org/repo`
/// and `git@github.com:org/repo` all give `github.com/org/repo`.
///
/// Lower case throughout, as Argo CD compares: forges treat repository paths without
/// regard to case, and comparing too widely only refreshes an Application once more.
pub fn repo_key(url: &str) -> String {
    let url = url.trim();
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (s.to_ascii_lowercase(), r.to_string()),
        // scp-like `user@host:path` (a `:` before any `/`)
        None => match url.split_once(':') {
            Some((host, path)) if !host.contains('/') => ("ssh".into(), format!("{host}/{path}")),
            _ => (String::new(), url.to_string()),
        },
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host_port = match host_port.rsplit_once(':') {
        Some((host, port)) if is_default_port(&scheme, port) => host,
        _ => host_port,
    };
    let path = path.split(['?', '#']).next().unwrap_or("");
    let path = path.trim_end_matches('/');
    let path = path
        .strip_suffix(".git")
        .unwrap_or(path)
        .trim_end_matches('/');
    format!("{host_port}{path}").to_lowercase()
}

fn is_default_port(scheme: &str, port: &str) -> bool {
    matches!(
        (scheme, port),
        ("https", "443") | ("http", "80") | ("ssh", "22") | ("git", "9418") | (_, "")
    )
}

/// Whether two URLs name the same repository (see [`repo_key`]).
pub fn same_repo(a: &str, b: &str) -> bool {
    repo_key(a) == repo_key(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forms_of_one_repository_have_one_key() {
        for url in [
            "https://github.com/org/repo",
            "https://github.com/org/repo.git",
            "https://github.com/org/repo/",
            "HTTPS://GitHub.com/Org/Repo.git",
            "https://user:token@github.com:443/org/repo",
            "http://github.com:80/org/repo",
            "ssh://git@github.com/org/repo.git",
            "ssh://git@github.com:22/org/repo",
            "git@github.com:org/repo.git",
            "github.com:org/repo",
            "git://github.com/org/repo",
        ] {
            assert_eq!(repo_key(url), "github.com/org/repo", "{url}");
        }
    }

    #[test]
    fn other_ports_hosts_and_paths_stay_apart() {
        assert_eq!(
            repo_key("ssh://git@bitbucketserver:7999/myproject/test-repo.git"),
            "bitbucketserver:7999/myproject/test-repo"
        );
        assert!(!same_repo(
            "https://github.com/org/repo",
            "https://github.com:8443/org/repo"
        ));
        assert!(!same_repo(
            "https://github.com/org/repo",
            "https://gitlab.com/org/repo"
        ));
        assert!(!same_repo(
            "https://github.com/org/repo",
            "https://github.com/org/repo2"
        ));
        assert!(!same_repo(
            "https://github.com/org/repo",
            "https://github.com/org/sub/repo"
        ));
        assert_eq!(
            repo_key("http://127.0.0.1:41234/team/app.git"),
            "127.0.0.1:41234/team/app"
        );
        assert_eq!(repo_key("file:///srv/git/app.git"), "/srv/git/app");
    }
}
