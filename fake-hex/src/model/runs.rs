//! Project runs and their status over time: PENDING for a while, then RUNNING, then the configured
//! outcome (COMPLETED unless told otherwise), unless cancelled first (KILLED).

use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

/// A run's status, as Hex spells it on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunStatus {
    /// Waiting for a kernel.
    Pending,
    /// Executing.
    Running,
    /// Finished with an error.
    Errored,
    /// Finished successfully.
    Completed,
    /// Cancelled.
    Killed,
    /// Never got a kernel.
    UnableToAllocateKernel,
}

impl RunStatus {
    /// The wire spelling, e.g. `"UNABLE_TO_ALLOCATE_KERNEL"`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Pending => "PENDING",
            RunStatus::Running => "RUNNING",
            RunStatus::Errored => "ERRORED",
            RunStatus::Completed => "COMPLETED",
            RunStatus::Killed => "KILLED",
            RunStatus::UnableToAllocateKernel => "UNABLE_TO_ALLOCATE_KERNEL",
        }
    }

    /// Parses the wire spelling.
    pub fn parse(s: &str) -> Option<RunStatus> {
        [
            RunStatus::Pending,
            RunStatus::Running,
            RunStatus::Errored,
            RunStatus::Completed,
            RunStatus::Killed,
            RunStatus::UnableToAllocateKernel,
        ]
        .into_iter()
        .find(|status| status.as_str() == s)
    }

    /// Whether the run can no longer change.
    pub fn is_terminal(self) -> bool {
        !matches!(self, RunStatus::Pending | RunStatus::Running)
    }
}

/// How future runs behave; each run copies this when it starts, so changing it later does not
/// rewrite history.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RunPlan {
    pub(crate) pending: TimeDelta,
    pub(crate) running: TimeDelta,
    pub(crate) outcome: RunStatus,
}

impl Default for RunPlan {
    fn default() -> Self {
        RunPlan {
            pending: TimeDelta::seconds(1),
            running: TimeDelta::seconds(2),
            outcome: RunStatus::Completed,
        }
    }
}

/// Someone told about a run's outcome (RunProject's `notifications`, one entry per recipient).
#[derive(Clone, Debug)]
pub(crate) struct Notification {
    /// `SUCCESS`, `FAILURE` or `ALL`.
    pub(crate) kind: String,
    /// `USER`, `GROUP` or `SLACK_CHANNEL`.
    pub(crate) recipient_type: &'static str,
    pub(crate) recipient_id: String,
    pub(crate) recipient_name: String,
    pub(crate) include_success_screenshot: bool,
    pub(crate) screenshot_format: Option<String>,
    pub(crate) subject: Option<String>,
    pub(crate) body: Option<String>,
}

/// One run of a project.
#[derive(Clone, Debug)]
pub(crate) struct Run {
    pub(crate) id: Uuid,
    pub(crate) project_id: Uuid,
    pub(crate) project_version: u32,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) plan: RunPlan,
    pub(crate) killed_at: Option<DateTime<Utc>>,
    pub(crate) notifications: Vec<Notification>,
}

impl Run {
    /// When a kernel is (or would be) allocated.
    fn kernel_at(&self) -> DateTime<Utc> {
        self.created_at + self.plan.pending
    }

    /// Whether the run ever reaches RUNNING.
    fn gets_a_kernel(&self) -> bool {
        self.plan.outcome != RunStatus::UnableToAllocateKernel
    }

    /// When the run finishes on its own.
    fn natural_end(&self) -> DateTime<Utc> {
        if self.gets_a_kernel() {
            self.kernel_at() + self.plan.running
        } else {
            self.kernel_at()
        }
    }

    /// The status at `now`.
    pub(crate) fn status(&self, now: DateTime<Utc>) -> RunStatus {
        if self.killed_at.is_some() {
            RunStatus::Killed
        } else if now < self.kernel_at() {
            RunStatus::Pending
        } else if now < self.natural_end() {
            RunStatus::Running
        } else {
            self.plan.outcome
        }
    }

    /// When execution started, if it has.
    pub(crate) fn start_time(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let started = self.kernel_at();
        let stop = self.killed_at.unwrap_or(now);
        (self.gets_a_kernel() && started <= stop).then_some(started)
    }

    /// When the run ended, if it has.
    pub(crate) fn end_time(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self.killed_at {
            Some(killed) => Some(killed),
            None => (now >= self.natural_end()).then(|| self.natural_end()),
        }
    }

    /// Milliseconds between start and end, once both are known.
    pub(crate) fn elapsed_ms(&self, now: DateTime<Utc>) -> Option<i64> {
        Some((self.end_time(now)? - self.start_time(now)?).num_milliseconds())
    }

    /// The statuses the run has had by `now`, each with when it began.
    pub(crate) fn history(&self, now: DateTime<Utc>) -> Vec<(RunStatus, DateTime<Utc>)> {
        let mut history = vec![(RunStatus::Pending, self.created_at)];
        if let Some(started) = self.start_time(now) {
            history.push((RunStatus::Running, started));
        }
        if let Some(ended) = self.end_time(now) {
            history.push((self.status(now), ended));
        }
        history
    }

    /// Cancels the run. A run that already finished cannot be cancelled: its status is returned.
    /// Cancelling a killed run again changes nothing and succeeds.
    pub(crate) fn cancel(&mut self, now: DateTime<Utc>) -> Result<(), RunStatus> {
        match self.status(now) {
            RunStatus::Pending | RunStatus::Running => {
                self.killed_at = Some(now);
                Ok(())
            }
            RunStatus::Killed => Ok(()),
            finished => Err(finished),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(outcome: RunStatus) -> Run {
        Run {
            id: Uuid::new_v4(),
            project_id: Uuid::new_v4(),
            project_version: 1,
            created_at: Utc::now(),
            plan: RunPlan { pending: TimeDelta::seconds(1), running: TimeDelta::seconds(2), outcome },
            killed_at: None,
            notifications: Vec::new(),
        }
    }

    #[test]
    fn a_run_moves_from_pending_to_running_to_its_outcome() {
        let r = run(RunStatus::Completed);
        let t0 = r.created_at;
        assert_eq!(r.status(t0), RunStatus::Pending);
        assert_eq!(r.start_time(t0), None);
        assert_eq!(r.status(t0 + TimeDelta::milliseconds(1500)), RunStatus::Running);
        let later = t0 + TimeDelta::seconds(5);
        assert_eq!(r.status(later), RunStatus::Completed);
        assert_eq!(r.elapsed_ms(later), Some(2000));
        let statuses: Vec<RunStatus> = r.history(later).into_iter().map(|(s, _)| s).collect();
        assert_eq!(statuses, [RunStatus::Pending, RunStatus::Running, RunStatus::Completed]);
    }

    #[test]
    fn a_run_without_a_kernel_never_starts() {
        let r = run(RunStatus::UnableToAllocateKernel);
        let later = r.created_at + TimeDelta::seconds(5);
        assert_eq!(r.status(later), RunStatus::UnableToAllocateKernel);
        assert_eq!(r.start_time(later), None);
    }

    #[test]
    fn only_unfinished_runs_can_be_cancelled() {
        let mut r = run(RunStatus::Completed);
        let t0 = r.created_at;
        assert_eq!(r.cancel(t0), Ok(()));
        assert_eq!(r.status(t0 + TimeDelta::seconds(9)), RunStatus::Killed);
        assert_eq!(r.cancel(t0 + TimeDelta::seconds(9)), Ok(()));
        let mut done = run(RunStatus::Completed);
        let later = done.created_at + TimeDelta::seconds(9);
        assert_eq!(done.cancel(later), Err(RunStatus::Completed));
    }

    #[test]
    fn statuses_parse_from_their_wire_spelling() {
        for s in ["PENDING", "RUNNING", "ERRORED", "COMPLETED", "KILLED", "UNABLE_TO_ALLOCATE_KERNEL"] {
            assert_eq!(RunStatus::parse(s).map(RunStatus::as_str), Some(s));
        }
        assert_eq!(RunStatus::parse("pending"), None);
    }
}
