//! The supervision decision core: OTP's strategies, restart policies and restart
//! intensity as a pure state machine.
//!
//! It never starts or stops anything. The driver tells it what happened
//! ([`Supervisor::handle_exit`]) and when ([`Time`]), and carries out the
//! [`Action`]s it returns, in order: a `Stop` must have completed (the child is gone)
//! before the driver moves on to the next action.
//!
//! # Incarnations
//!
//! Every `Start` carries a fresh incarnation number, and every exit report names the
//! incarnation that exited. Exits of older incarnations are stale and ignored, so a
//! late report of a child the supervisor itself stopped can never be mistaken for a
//! crash of its replacement.
//!
//! # Semantics (Erlang/OTP's, with one documented choice)
//!
//! * `Permanent` children are always restarted, `Transient` ones only after an
//!   abnormal exit, `Temporary` ones never (and their spec is dropped when they end).
//! * More than `max_restarts` restarts within `period` makes the supervisor stop all
//!   its children, newest first, and escalate to its parent.
//! * `OneForOne` restarts the child that exited. `OneForAll` stops the other running
//!   children (newest first) and restarts them all in start order. `RestForOne` does
//!   the same for the exited child and those started after it.
//! * Choice: children that were *not running* when a sibling failed (stopped with
//!   [`Supervisor::terminate_child`], or transient children that ended normally) stay
//!   stopped under `OneForAll`/`RestForOne`; only what was running is restarted.
//! * Shutdown stops the children in reverse start order.

use std::collections::VecDeque;
use std::time::Duration;

use plexus_actors::Time;
use serde::{Deserialize, Serialize};

/// Which siblings a failure takes down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Only the failed child.
    OneForOne,
    /// Every child.
    OneForAll,
    /// The failed child and every child started after it.
    RestForOne,
}

/// When a child is restarted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Restart {
    /// Always.
    Permanent,
    /// Only after an abnormal exit.
    Transient,
    /// Never.
    Temporary,
}

/// At most `max_restarts` restarts within `period`; one more escalates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intensity {
    /// Restarts tolerated within the period.
    pub max_restarts: u32,
    /// The sliding window.
    pub period: Duration,
}

impl Default for Intensity {
    /// OTP's default: 1 restart in 5 seconds.
    fn default() -> Self {
        Self {
            max_restarts: 1,
            period: Duration::from_secs(5),
        }
    }
}

/// How a child ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExitReason {
    /// It stopped cleanly.
    Normal,
    /// It failed (error, panic, kill, or its node died); the string says how.
    Failed(String),
}

/// What the core needs to know about a child.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildSpec {
    /// Unique among the supervisor's children.
    pub id: String,
    /// The restart policy.
    pub restart: Restart,
}

impl ChildSpec {
    /// A child spec.
    pub fn new(id: impl Into<String>, restart: Restart) -> Self {
        Self {
            id: id.into(),
            restart,
        }
    }
}

/// What the driver must do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Start (or restart, with fresh state) the child.
    Start {
        /// The child.
        child: String,
        /// Report its exit with this number.
        incarnation: u64,
    },
    /// Stop the child and wait until it is gone.
    Stop {
        /// The child.
        child: String,
        /// The incarnation to stop.
        incarnation: u64,
    },
    /// Give up: every child has been stopped; the supervisor must now fail so its
    /// parent can decide.
    Escalate {
        /// Why.
        reason: String,
    },
}

/// A child's state as the core sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChildStatus {
    /// Started with this incarnation and not known to have exited.
    Running(u64),
    /// Told to stop; waiting for the exit of this incarnation.
    Stopping(u64),
    /// Not running.
    Stopped,
}

/// Misuse of the core's API; the caller is at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SupervisorError {
    /// A child with this id exists already.
    #[error("a child named `{0}` exists already")]
    DuplicateChild(String),
    /// No child has this id.
    #[error("no child named `{0}`")]
    NoSuchChild(String),
    /// The child must be stopped first.
    #[error("child `{0}` is still running")]
    StillRunning(String),
    /// The supervisor is shutting down or has escalated.
    #[error("the supervisor is no longer running")]
    NotRunning,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Running,
    ShuttingDown,
    Escalated,
}

#[derive(Clone, Debug)]
struct Child {
    spec: ChildSpec,
    status: ChildStatus,
}

/// One supervisor's decision state.
#[derive(Clone, Debug)]
pub struct Supervisor {
    strategy: Strategy,
    intensity: Intensity,
    children: Vec<Child>,
    restarts: VecDeque<Time>,
    next_incarnation: u64,
    phase: Phase,
}

impl Supervisor {
    /// A supervisor with no children.
    pub fn new(strategy: Strategy, intensity: Intensity) -> Self {
        Self {
            strategy,
            intensity,
            children: Vec::new(),
            restarts: VecDeque::new(),
            next_incarnation: 1,
            phase: Phase::Running,
        }
    }

    /// The strategy.
    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    /// The children, in start order, with their status.
    pub fn children(&self) -> impl Iterator<Item = (&ChildSpec, ChildStatus)> {
        self.children.iter().map(|c| (&c.spec, c.status))
    }

    /// Whether the supervisor has escalated.
    pub fn has_escalated(&self) -> bool {
        self.phase == Phase::Escalated
    }

    fn position(&self, id: &str) -> Option<usize> {
        self.children.iter().position(|c| c.spec.id == id)
    }

    fn start_action(&mut self, index: usize) -> Action {
        let incarnation = self.next_incarnation;
        self.next_incarnation += 1;
        let child = &mut self.children[index];
        child.status = ChildStatus::Running(incarnation);
        Action::Start {
            child: child.spec.id.clone(),
            incarnation,
        }
    }

    fn stop_action(&mut self, index: usize) -> Option<Action> {
        let child = &mut self.children[index];
        match child.status {
            ChildStatus::Running(incarnation) => {
                child.status = ChildStatus::Stopping(incarnation);
                Some(Action::Stop {
                    child: child.spec.id.clone(),
                    incarnation,
                })
            }
            _ => None,
        }
    }

    /// Adds a child and starts it. Initial children are added this way, in order.
    pub fn add_child(&mut self, spec: ChildSpec) -> Result<Vec<Action>, SupervisorError> {
        if self.phase != Phase::Running {
            return Err(SupervisorError::NotRunning);
        }
        if self.position(&spec.id).is_some() {
            return Err(SupervisorError::DuplicateChild(spec.id));
        }
        self.children.push(Child {
            spec,
            status: ChildStatus::Stopped,
        });
        let index = self.children.len() - 1;
        Ok(vec![self.start_action(index)])
    }

    /// Stops a child on request; it is not restarted (a temporary child is dropped).
    pub fn terminate_child(&mut self, id: &str) -> Result<Vec<Action>, SupervisorError> {
        let index = self
            .position(id)
            .ok_or_else(|| SupervisorError::NoSuchChild(id.to_string()))?;
        Ok(self.stop_action(index).into_iter().collect())
    }

    /// Starts a stopped child again.
    pub fn restart_child(&mut self, id: &str) -> Result<Vec<Action>, SupervisorError> {
        if self.phase != Phase::Running {
            return Err(SupervisorError::NotRunning);
        }
        let index = self
            .position(id)
            .ok_or_else(|| SupervisorError::NoSuchChild(id.to_string()))?;
        if self.children[index].status != ChildStatus::Stopped {
            return Err(SupervisorError::StillRunning(id.to_string()));
        }
        Ok(vec![self.start_action(index)])
    }

    /// Forgets a stopped child.
    pub fn delete_child(&mut self, id: &str) -> Result<(), SupervisorError> {
        let index = self
            .position(id)
            .ok_or_else(|| SupervisorError::NoSuchChild(id.to_string()))?;
        if self.children[index].status != ChildStatus::Stopped {
            return Err(SupervisorError::StillRunning(id.to_string()));
        }
        self.children.remove(index);
        Ok(())
    }

    /// A start the driver attempted failed; handled like a crash of that incarnation.
    pub fn handle_start_failed(
        &mut self,
        now: Time,
        id: &str,
        incarnation: u64,
        reason: String,
    ) -> Vec<Action> {
        self.handle_exit(now, id, incarnation, ExitReason::Failed(reason))
    }

    /// A child incarnation ended. Returns what to do about it.
    pub fn handle_exit(
        &mut self,
        now: Time,
        id: &str,
        incarnation: u64,
        reason: ExitReason,
    ) -> Vec<Action> {
        let Some(index) = self.position(id) else {
            return Vec::new();
        };
        match self.children[index].status {
            ChildStatus::Running(i) if i == incarnation => {}
            ChildStatus::Stopping(i) if i == incarnation => {
                self.children[index].status = ChildStatus::Stopped;
                if self.children[index].spec.restart == Restart::Temporary {
                    self.children.remove(index);
                }
                return Vec::new();
            }
            // A stale report about an incarnation already replaced or stopped.
            _ => return Vec::new(),
        }
        self.children[index].status = ChildStatus::Stopped;
        let restart = match self.children[index].spec.restart {
            Restart::Permanent => true,
            Restart::Transient => matches!(reason, ExitReason::Failed(_)),
            Restart::Temporary => false,
        };
        if self.children[index].spec.restart == Restart::Temporary {
            self.children.remove(index);
        }
        if self.phase != Phase::Running || !restart {
            return Vec::new();
        }

        self.restarts.push_back(now);
        while let Some(&oldest) = self.restarts.front() {
            if now.saturating_since(oldest) > self.intensity.period {
                self.restarts.pop_front();
            } else {
                break;
            }
        }
        if self.restarts.len() > self.intensity.max_restarts as usize {
            return self.escalate(format!(
                "child `{id}` needed more than {} restarts within {:?}",
                self.intensity.max_restarts, self.intensity.period
            ));
        }

        let mut actions = Vec::new();
        let (first, last) = match self.strategy {
            Strategy::OneForOne => (index, index),
            Strategy::OneForAll => (0, self.children.len() - 1),
            Strategy::RestForOne => (index, self.children.len() - 1),
        };
        // Which siblings in the range were running: they are stopped and restarted.
        let mut restart_set = vec![index];
        for i in (first..=last).rev() {
            if i == index {
                continue;
            }
            if let Some(stop) = self.stop_action(i) {
                actions.push(stop);
                if self.children[i].spec.restart != Restart::Temporary {
                    restart_set.push(i);
                }
            }
        }
        restart_set.sort_unstable();
        for i in restart_set {
            actions.push(self.start_action(i));
        }
        // Temporary siblings that were stopped will be dropped when their exit arrives.
        actions
    }

    fn escalate(&mut self, reason: String) -> Vec<Action> {
        self.phase = Phase::Escalated;
        let mut actions: Vec<Action> = (0..self.children.len())
            .rev()
            .filter_map(|i| self.stop_action(i))
            .collect();
        actions.push(Action::Escalate { reason });
        actions
    }

    /// Begins an orderly shutdown: every running child is stopped, newest first.
    pub fn shutdown(&mut self) -> Vec<Action> {
        if self.phase == Phase::Running {
            self.phase = Phase::ShuttingDown;
        }
        (0..self.children.len())
            .rev()
            .filter_map(|i| self.stop_action(i))
            .collect()
    }

    /// Checks the core's invariants; the simulator and tests call it after every step.
    pub fn check_invariants(&self) -> Result<(), String> {
        for (i, a) in self.children.iter().enumerate() {
            if self.children[..i].iter().any(|b| b.spec.id == a.spec.id) {
                return Err(format!("duplicate child `{}`", a.spec.id));
            }
            match a.status {
                ChildStatus::Running(n) | ChildStatus::Stopping(n)
                    if n >= self.next_incarnation =>
                {
                    return Err(format!(
                        "child `{}` has unissued incarnation {n}",
                        a.spec.id
                    ));
                }
                _ => {}
            }
        }
        if self.phase == Phase::Escalated
            && let Some(c) = self
                .children
                .iter()
                .find(|c| matches!(c.status, ChildStatus::Running(_)))
        {
            return Err(format!(
                "escalated supervisor still has `{}` running",
                c.spec.id
            ));
        }
        if self.phase == Phase::Running
            && self.restarts.len() > self.intensity.max_restarts as usize
        {
            return Err("restart intensity exceeded without escalating".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
