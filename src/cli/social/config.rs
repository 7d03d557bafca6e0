//! Where `duet login` keeps the server, user and token, and how flags and the environment
//! (`DUET_SERVER`, `DUET_USER`, `DUET_TOKEN`) override them.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use duet_signaling::UserName;
use serde::{Deserialize, Serialize};

/// What `duet login` saves. Its `Debug` output leaves the token out.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedLogin {
    /// The server's URL.
    pub server: Option<String>,
    /// The account name.
    pub user: Option<String>,
    /// The account's token.
    pub token: Option<String>,
}

/// Everything needed to connect. Its `Debug` output leaves the token out.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The server's URL, `ws://host:port/`.
    pub server: String,
    /// The account.
    pub user: UserName,
    /// The account's token.
    pub token: String,
}

/// What `Debug` shows in place of a token.
fn hidden(token: &Option<String>) -> &'static str {
    match token {
        Some(_) => "Some(<hidden>)",
        None => "None",
    }
}

impl std::fmt::Debug for SavedLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SavedLogin")
            .field("server", &self.server)
            .field("user", &self.user)
            .field("token", &format_args!("{}", hidden(&self.token)))
            .finish()
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("server", &self.server)
            .field("user", &self.user)
            .field("token", &format_args!("<hidden>"))
            .finish()
    }
}

/// The file `duet login` writes: `$DUET_CONFIG`, else `$XDG_CONFIG_HOME/duet/login.json`,
/// else `~/.config/duet/login.json`.
pub fn config_path() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("DUET_CONFIG") {
        return Ok(PathBuf::from(p));
    }
    let base = match std::env::var_os("XDG_CONFIG_HOME") {
        Some(x) if !x.is_empty() => PathBuf::from(x),
        _ => {
            PathBuf::from(std::env::var_os("HOME").context("neither DUET_CONFIG nor HOME is set")?)
                .join(".config")
        }
    };
    Ok(base.join("duet").join("login.json"))
}

/// Reads a saved login; a missing file is an empty one.
pub fn load(path: &Path) -> Result<SavedLogin> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(SavedLogin::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Writes a saved login, readable by its owner only (it holds a token).
pub fn save(path: &Path, login: &SavedLogin) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(login)?;
    // Written whole to a new private file, then renamed over the old one: the token is never in
    // a file others can read, even if the old file had been made readable.
    let tmp = path.with_extension("json.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(text.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Turns `host:port`, `ws://host:port/path` or `wss://host:port/path` into a WebSocket URL
/// (`host:port` alone means `ws://`); refuses other schemes.
pub fn normalize_url(url: &str) -> Result<String> {
    let url = url.trim();
    if url.is_empty() {
        bail!("the server URL is empty");
    }
    if let Some((scheme, _)) = url.split_once("://") {
        if scheme != "ws" && scheme != "wss" {
            bail!("server URL {url:?}: use wss:// (or ws:// on this machine)");
        }
        return Ok(url.to_owned());
    }
    Ok(format!("ws://{url}/"))
}

/// Picks each of server, user and token from the flag, else the environment, else the saved login.
pub fn resolve(
    server: Option<&str>,
    user: Option<&str>,
    token: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
    saved: &SavedLogin,
) -> Result<Credentials> {
    let pick = |flag: Option<&str>, var: &str, saved: &Option<String>| {
        flag.map(str::to_owned)
            .or_else(|| env(var).filter(|v| !v.is_empty()))
            .or_else(|| saved.clone())
    };
    let server = pick(server, "DUET_SERVER", &saved.server)
        .context("no server: give --server, set DUET_SERVER, or run `duet login` first")?;
    let user = pick(user, "DUET_USER", &saved.user)
        .context("no user: give --user, set DUET_USER, or run `duet login` first")?;
    let token = pick(token, "DUET_TOKEN", &saved.token)
        .context("no token: give --token, set DUET_TOKEN, or run `duet login` first")?;
    Ok(Credentials {
        server: normalize_url(&server)?,
        user: UserName::new(&user)?,
        token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_the_environment_which_beats_the_saved_login() {
        let saved = SavedLogin {
            server: Some("ws://saved:1/".into()),
            user: Some("alice".into()),
            token: Some("saved-token".into()),
        };
        let env = |var: &str| (var == "DUET_TOKEN").then(|| "env-token".to_owned());
        let c = resolve(Some("10.0.0.2:7878"), None, None, env, &saved).unwrap();
        assert_eq!(c.server, "ws://10.0.0.2:7878/");
        assert_eq!(c.user.as_str(), "alice");
        assert_eq!(c.token, "env-token");
        let c = resolve(None, None, Some("flag-token"), env, &saved).unwrap();
        assert_eq!(
            (c.server.as_str(), c.token.as_str()),
            ("ws://saved:1/", "flag-token")
        );
        let missing = resolve(None, None, None, |_| None, &SavedLogin::default()).unwrap_err();
        assert!(missing.to_string().contains("no server"), "{missing}");
        assert!(normalize_url("https://x/").is_err());
    }

    #[test]
    fn saved_logins_round_trip_and_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("login.json");
        assert_eq!(load(&path).unwrap(), SavedLogin::default());
        let login = SavedLogin {
            server: Some("ws://h:1/".into()),
            user: Some("bob".into()),
            token: Some("t".into()),
        };
        save(&path, &login).unwrap();
        assert_eq!(load(&path).unwrap(), login);
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // A file someone made readable is private again after the next write.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        save(&path, &login).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(load(&path).unwrap(), login);
    }

    #[test]
    fn tokens_stay_out_of_debug_output() {
        let secret = "0123456789abcdef-secret";
        let login = SavedLogin {
            server: Some("ws://h:1/".into()),
            user: Some("bob".into()),
            token: Some(secret.into()),
        };
        let creds = resolve(None, None, None, |_| None, &login).unwrap();
        let app = crate::client::ClientConfig::new("ws://h:1/", creds.user.clone(), secret);
        let lib = duet_signaling::ClientConfig::new("ws://h:1/", creds.user.clone(), secret);
        for shown in [
            format!("{login:?}"),
            format!("{creds:?}"),
            format!("{app:?}"),
            format!("{lib:?}"),
        ] {
            assert!(!shown.contains(secret), "{shown}");
            assert!(shown.contains("bob"), "{shown}");
        }
    }
}
