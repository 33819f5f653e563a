//! Development secrets beside a config: `dev.env` in the config file's folder.
//!
//! The shipped `config/gateway.toml` names its secrets with `*_env` keys, as production configs
//! do, and `config/dev.env` holds development values for them. Every command falls back to that
//! file for a variable the environment does not set, and says so once on stderr, so a newcomer's
//! `check` or `run` works straight after the demo. A production config has no `dev.env` beside it
//! (the container image and the Kubernetes ConfigMap carry none), so there an unset variable stays
//! a configuration error.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The file name looked for beside the config.
pub const FILE_NAME: &str = "dev.env";

/// Variables already announced as taken from a `dev.env`: a reload must not repeat the notice.
static ANNOUNCED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// The `KEY=VALUE` lines of a `dev.env` file (`#` comments and blank lines skipped).
#[derive(Debug, Default)]
pub struct DevEnv {
    file: Option<PathBuf>,
    values: Vec<(String, String)>,
}

impl DevEnv {
    /// The `dev.env` beside `config_path`, or an empty one when there is none.
    pub fn beside(config_path: &Path) -> DevEnv {
        let file = config_path
            .parent()
            .unwrap_or(Path::new("."))
            .join(FILE_NAME);
        match std::fs::read_to_string(&file) {
            Ok(text) => DevEnv {
                values: parse(&text),
                file: Some(file),
            },
            Err(_) => DevEnv::default(),
        }
    }

    /// The development value of `name`, if the file has one.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// `name` from the process environment, else from this file with a one-time notice on stderr.
    pub fn lookup(&self, name: &str) -> Option<String> {
        if let Ok(value) = std::env::var(name) {
            return Some(value);
        }
        let value = self.get(name)?.to_string();
        let mut announced = ANNOUNCED.lock().unwrap_or_else(|e| e.into_inner());
        if announced.insert(name.to_string()) {
            let file = self.file.as_deref().unwrap_or(Path::new(FILE_NAME));
            eprintln!(
                "note: {name} is not set; using its development value from {} (never in production)",
                file.display()
            );
        }
        Some(value)
    }
}

fn parse(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.trim().to_string(), value.trim().to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_file_beside_the_config_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(FILE_NAME),
            "# comment\n\nRG_DEV_ENV_TEST_KEY = value-1\nOTHER=x=y\n",
        )
        .unwrap();
        let env = DevEnv::beside(&dir.path().join("gateway.toml"));
        assert_eq!(env.get("RG_DEV_ENV_TEST_KEY"), Some("value-1"));
        assert_eq!(env.get("OTHER"), Some("x=y"));
        assert_eq!(
            env.lookup("RG_DEV_ENV_TEST_KEY").as_deref(),
            Some("value-1")
        );
        assert_eq!(env.get("MISSING"), None);

        let elsewhere = tempfile::tempdir().unwrap();
        let none = DevEnv::beside(&elsewhere.path().join("gateway.toml"));
        assert_eq!(none.lookup("RG_DEV_ENV_TEST_KEY"), None);
    }
}
