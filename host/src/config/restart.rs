//! The `[restart]` table: what a job does when it fails while running (a
//! plugin trap, a sink or store error). Flink's strategies, by Flink's
//! names: `none` (the job fails, the default), `fixed-delay` (restart up to
//! `attempts` times, `delay_ms` apart) and `failure-rate` (restart while at
//! most `max_failures_per_interval` failures fall within
//! `failure_rate_interval_ms`). A restart happens inside the process, from
//! the job's newest complete checkpoint, so it needs checkpoints.

use std::time::Duration;

use serde::Deserialize;

use crate::{Error, Result};

/// The `[restart]` table as the user writes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartConfig {
    /// `none` (default), `fixed-delay` or `failure-rate`.
    #[serde(default = "default_strategy")]
    pub strategy: String,
    /// fixed-delay: restarts before the job fails. Default 3.
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// Both strategies: the wait before each restart (ms). Default 1000.
    #[serde(default = "default_delay_ms")]
    pub delay_ms: u64,
    /// failure-rate: most failures within the interval that are still
    /// restarted. Default 1.
    #[serde(default = "default_max_failures")]
    pub max_failures_per_interval: u32,
    /// failure-rate: the interval (ms). Default 60000.
    #[serde(default = "default_interval_ms")]
    pub failure_rate_interval_ms: u64,
}

impl Default for RestartConfig {
    fn default() -> Self {
        Self {
            strategy: default_strategy(),
            attempts: default_attempts(),
            delay_ms: default_delay_ms(),
            max_failures_per_interval: default_max_failures(),
            failure_rate_interval_ms: default_interval_ms(),
        }
    }
}

fn default_strategy() -> String {
    "none".into()
}
fn default_attempts() -> u32 {
    3
}
fn default_delay_ms() -> u64 {
    1000
}
fn default_max_failures() -> u32 {
    1
}
fn default_interval_ms() -> u64 {
    60_000
}

/// The resolved restart strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestartStrategy {
    /// A failure ends the job.
    #[default]
    None,
    /// Restart up to `attempts` times in all, `delay` apart.
    FixedDelay {
        /// Restarts before the job fails.
        attempts: u32,
        /// Wait before each restart.
        delay: Duration,
    },
    /// Restart while the failures within `interval` (this one included)
    /// are at most `max_failures`.
    FailureRate {
        /// Most failures within the interval that are still restarted.
        max_failures: u32,
        /// The interval.
        interval: Duration,
        /// Wait before each restart.
        delay: Duration,
    },
}

impl std::fmt::Display for RestartStrategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RestartStrategy::None => write!(f, "none"),
            RestartStrategy::FixedDelay { attempts, delay } => write!(
                f,
                "fixed-delay: {attempts} attempts, {} ms apart",
                delay.as_millis()
            ),
            RestartStrategy::FailureRate {
                max_failures,
                interval,
                delay,
            } => write!(
                f,
                "failure-rate: at most {max_failures} failures per {} ms, {} ms apart",
                interval.as_millis(),
                delay.as_millis()
            ),
        }
    }
}

impl RestartConfig {
    /// The strategy; `checkpoints` says whether the job takes them (a
    /// restart resumes from one).
    pub(super) fn resolve(&self, checkpoints: bool) -> Result<RestartStrategy> {
        let delay = Duration::from_millis(self.delay_ms);
        let strategy = match self.strategy.as_str() {
            "none" => return Ok(RestartStrategy::None),
            "fixed-delay" => RestartStrategy::FixedDelay {
                attempts: self.attempts,
                delay,
            },
            "failure-rate" => {
                if self.max_failures_per_interval == 0 || self.failure_rate_interval_ms == 0 {
                    return Err(Error::Config(
                        "[restart] failure-rate needs max_failures_per_interval and \
                         failure_rate_interval_ms of at least 1"
                            .into(),
                    ));
                }
                RestartStrategy::FailureRate {
                    max_failures: self.max_failures_per_interval,
                    interval: Duration::from_millis(self.failure_rate_interval_ms),
                    delay,
                }
            }
            other => {
                return Err(Error::Config(format!(
                    "[restart] strategy `{other}`: use none, fixed-delay or failure-rate"
                )));
            }
        };
        if !checkpoints {
            return Err(Error::Config(format!(
                "[restart] strategy `{}` restarts the job from its newest checkpoint, and this \
                 job takes none ([checkpoints] enabled = false): enable checkpoints, or set \
                 strategy = \"none\"",
                self.strategy
            )));
        }
        Ok(strategy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RestartStrategy> {
        let c: RestartConfig = toml::from_str(text).map_err(|e| Error::Config(e.to_string()))?;
        c.resolve(true)
    }

    #[test]
    fn flink_names_with_their_settings() {
        assert_eq!(parse("").unwrap(), RestartStrategy::None);
        assert_eq!(
            parse("strategy = \"fixed-delay\"\nattempts = 5\ndelay_ms = 10").unwrap(),
            RestartStrategy::FixedDelay {
                attempts: 5,
                delay: Duration::from_millis(10)
            }
        );
        assert_eq!(
            parse("strategy = \"failure-rate\"\nmax_failures_per_interval = 2").unwrap(),
            RestartStrategy::FailureRate {
                max_failures: 2,
                interval: Duration::from_secs(60),
                delay: Duration::from_secs(1)
            }
        );
        let e = parse("strategy = \"exponential\"").unwrap_err().to_string();
        assert!(e.contains("none, fixed-delay or failure-rate"), "{e}");
        assert!(
            parse("strategy = \"none\"\nattempt = 1").is_err(),
            "unknown key"
        );
    }

    #[test]
    fn a_restart_needs_checkpoints() {
        let c = RestartConfig {
            strategy: "fixed-delay".into(),
            ..RestartConfig::default()
        };
        let e = c.resolve(false).unwrap_err().to_string();
        assert!(e.contains("enable checkpoints"), "{e}");
        assert_eq!(
            RestartConfig::default().resolve(false).unwrap(),
            RestartStrategy::None
        );
    }
}
