//! One consumer group's state machine (Kafka's classic group protocol), as plain functions
//! over plain data: every decision (join, sync, heartbeat, leave, commit checks, timeouts)
//! is a method that takes the request and the time and returns the answer, plus
//! [`Effects`] for answers owed to other, parked members. No I/O and no clock here; the
//! [`super::coordinator`] owns the groups, parks the requests and writes the records.
//!
//! States: Empty -> PreparingRebalance (joins parked) -> CompletingRebalance (waiting for
//! the leader's SyncGroup) -> Stable; a join with new metadata, a leader rejoin, a leave or
//! an expired session goes back to PreparingRebalance. Dead is a removed group.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;

use super::records::{GroupValue, OffsetValue, StoredMember};

/// A Kafka error code (0 = none).
pub(crate) type Code = i16;

const NONE: Code = 0;

fn code(e: ResponseError) -> Code {
    e.code()
}

/// A group's state, named as DescribeGroups and ListGroups report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GroupState {
    /// No members; may hold offsets.
    Empty,
    /// Collecting joins.
    PreparingRebalance,
    /// Waiting for the leader's assignment.
    CompletingRebalance,
    /// Assignment distributed.
    Stable,
    /// Removed.
    Dead,
}

impl GroupState {
    /// Kafka's name for the state.
    pub(crate) fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// Broker settings that shape group decisions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct GroupConfig {
    /// `group.initial.rebalance.delay.ms`.
    pub initial_rebalance_delay_ms: i64,
    /// `group.min.session.timeout.ms`.
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`.
    pub max_session_timeout_ms: i32,
    /// `group.max.size`.
    pub max_size: usize,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            initial_rebalance_delay_ms: 3000,
            min_session_timeout_ms: 6000,
            max_session_timeout_ms: 1_800_000,
            max_size: i32::MAX as usize,
        }
    }
}

/// A group member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Member {
    /// Member id.
    pub member_id: String,
    /// `group.instance.id` for static members.
    pub instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host as Kafka shows it (`/127.0.0.1`).
    pub client_host: String,
    /// Session timeout.
    pub session_timeout_ms: i32,
    /// Rebalance timeout.
    pub rebalance_timeout_ms: i32,
    /// Protocols it supports, in preference order, with their metadata.
    pub protocols: Vec<(String, Bytes)>,
    /// Assignment from the last completed sync.
    pub assignment: Bytes,
    awaiting_join: bool,
    awaiting_sync: bool,
    session_deadline: i64,
    seq: u64,
}

impl Member {
    /// Its metadata (subscription) for `protocol`.
    pub(crate) fn metadata(&self, protocol: Option<&str>) -> Bytes {
        protocol
            .and_then(|p| self.protocols.iter().find(|(name, _)| name == p))
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    fn supports(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|(name, _)| name == protocol)
    }
}

/// A JoinGroup request, decoded.
#[derive(Clone, Debug, Default)]
pub(crate) struct JoinRequest {
    /// Member id ("" for a first join).
    pub member_id: String,
    /// `group.instance.id`.
    pub instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Session timeout.
    pub session_timeout_ms: i32,
    /// Rebalance timeout (v0: the session timeout).
    pub rebalance_timeout_ms: i32,
    /// Protocol type ("consumer").
    pub protocol_type: String,
    /// Protocols in preference order.
    pub protocols: Vec<(String, Bytes)>,
    /// v4+: a first join gets MEMBER_ID_REQUIRED (KIP-394).
    pub require_known_member_id: bool,
    /// The id to hand out if this join needs a new one (the caller makes it, so this
    /// module stays deterministic).
    pub new_member_id: String,
}

/// One member in the leader's JoinGroup response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct JoinedMember {
    /// Member id.
    pub member_id: String,
    /// Instance id.
    pub instance_id: Option<String>,
    /// Its metadata for the chosen protocol.
    pub metadata: Bytes,
}

/// A JoinGroup answer.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub(crate) struct JoinResponse {
    /// Error code.
    pub error: Code,
    /// The member's id.
    pub member_id: String,
    /// Generation.
    pub generation: i32,
    /// Protocol type.
    pub protocol_type: Option<String>,
    /// Chosen protocol.
    pub protocol: Option<String>,
    /// Leader's member id.
    pub leader: String,
    /// All members (leader only).
    pub members: Vec<JoinedMember>,
    /// v9: the static leader keeps its assignment and need not compute one.
    pub skip_assignment: bool,
}

impl JoinResponse {
    /// An error answer.
    pub(crate) fn error(error: Code, member_id: &str) -> JoinResponse {
        JoinResponse { error, member_id: member_id.to_string(), generation: -1, ..Default::default() }
    }
}

/// Who a SyncGroup, Heartbeat or OffsetCommit comes from, as the request names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MemberRef<'a> {
    /// Member id.
    pub member_id: &'a str,
    /// `group.instance.id` for static members.
    pub instance_id: Option<&'a str>,
    /// The generation the member believes current (-1: none).
    pub generation: i32,
}

impl<'a> MemberRef<'a> {
    /// The member named by a request.
    pub(crate) fn new(member_id: &'a str, instance_id: Option<&'a str>, generation: i32) -> Self {
        MemberRef { member_id, instance_id, generation }
    }
}

/// A SyncGroup answer.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub(crate) struct SyncResponse {
    /// Error code.
    pub error: Code,
    /// Protocol type.
    pub protocol_type: Option<String>,
    /// Chosen protocol.
    pub protocol: Option<String>,
    /// The member's assignment.
    pub assignment: Bytes,
}

impl SyncResponse {
    /// An error answer.
    pub(crate) fn error(error: Code) -> SyncResponse {
        SyncResponse { error, ..Default::default() }
    }
}

/// What a request caused beyond its own answer.
#[derive(Debug, Default)]
pub(crate) struct Effects {
    /// Parked JoinGroup requests to answer, by member id.
    pub joins: Vec<(String, JoinResponse)>,
    /// Parked SyncGroup requests to answer, by member id.
    pub syncs: Vec<(String, SyncResponse)>,
    /// The group's metadata changed and must be written to `__consumer_offsets`.
    pub store_group: bool,
    /// Members removed (left, expired, or fenced out), with why, for the log.
    pub removed: Vec<(String, &'static str)>,
}

/// A request's own outcome: answered now, or parked until the group moves on.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome<R> {
    /// Answer now.
    Reply(R),
    /// Park under this member id; the answer arrives through [`Effects`].
    Parked(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct InitialDelay {
    remaining_ms: i64,
    new_members: bool,
}

/// One consumer group.
#[derive(Clone, Debug)]
pub(crate) struct Group {
    /// Group id.
    pub id: String,
    /// Current state.
    pub state: GroupState,
    /// Protocol type of its members (None for commit-only groups).
    pub protocol_type: Option<String>,
    /// Protocol chosen at the last rebalance.
    pub protocol: Option<String>,
    /// Generation.
    pub generation: i32,
    /// Leader's member id.
    pub leader: Option<String>,
    /// Members by id.
    pub members: BTreeMap<String, Member>,
    /// Static members: instance id -> member id.
    pub static_members: HashMap<String, String>,
    /// When the group entered its state (ms).
    pub state_timestamp: i64,
    /// Committed offsets by (topic, partition).
    pub offsets: BTreeMap<(String, i32), OffsetValue>,
    pending: HashMap<String, i64>,
    pending_sync: BTreeSet<String>,
    join_deadline: Option<i64>,
    sync_deadline: Option<i64>,
    initial_delay: Option<InitialDelay>,
    next_seq: u64,
}

impl Group {
    /// A new, empty group.
    pub(crate) fn new(id: &str, now: i64) -> Group {
        Group {
            id: id.to_string(),
            state: GroupState::Empty,
            protocol_type: None,
            protocol: None,
            generation: 0,
            leader: None,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            state_timestamp: now,
            offsets: BTreeMap::new(),
            pending: HashMap::new(),
            pending_sync: BTreeSet::new(),
            join_deadline: None,
            sync_deadline: None,
            initial_delay: None,
            next_seq: 0,
        }
    }

    /// Rebuilds a group from its stored metadata: with members it resumes Stable (their
    /// sessions restart now), without it is Empty.
    pub(crate) fn from_stored(id: &str, v: &GroupValue, now: i64) -> Group {
        let mut g = Group::new(id, now);
        g.protocol_type = (!v.protocol_type.is_empty()).then(|| v.protocol_type.clone());
        g.generation = v.generation;
        g.protocol = v.protocol.clone();
        g.leader = v.leader.clone();
        g.state_timestamp = if v.current_state_timestamp > 0 { v.current_state_timestamp } else { now };
        for m in &v.members {
            let seq = g.next_seq;
            g.next_seq += 1;
            if let Some(i) = &m.instance_id {
                g.static_members.insert(i.clone(), m.member_id.clone());
            }
            g.members.insert(
                m.member_id.clone(),
                Member {
                    member_id: m.member_id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_timeout_ms: m.session_timeout_ms,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    protocols: vec![(v.protocol.clone().unwrap_or_default(), m.subscription.clone())],
                    assignment: m.assignment.clone(),
                    awaiting_join: false,
                    awaiting_sync: false,
                    session_deadline: now + i64::from(m.session_timeout_ms),
                    seq,
                },
            );
        }
        g.state = if g.members.is_empty() { GroupState::Empty } else { GroupState::Stable };
        g
    }

    /// The metadata record for this group.
    pub(crate) fn stored(&self) -> GroupValue {
        GroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            current_state_timestamp: self.state_timestamp,
            members: self
                .members
                .values()
                .map(|m| StoredMember {
                    member_id: m.member_id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: m.metadata(self.protocol.as_deref()),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    /// Whether the group can be forgotten once `expired` offsets are gone: no members, no
    /// pending joins, no offsets left.
    pub(crate) fn forgettable_after(&self, expired: &[(String, i32)]) -> bool {
        self.state == GroupState::Empty && self.pending.is_empty() && self.offsets.keys().all(|k| expired.contains(k))
    }

    fn transition(&mut self, state: GroupState, now: i64) {
        self.state = state;
        self.state_timestamp = now;
    }

    fn max_rebalance_timeout(&self) -> i64 {
        self.members.values().map(|m| i64::from(m.rebalance_timeout_ms)).max().unwrap_or(0)
    }

    /// Protocols every member supports.
    fn candidates(&self) -> Vec<String> {
        let Some(first) = self.members.values().next() else { return Vec::new() };
        first
            .protocols
            .iter()
            .map(|(name, _)| name.clone())
            .filter(|p| self.members.values().all(|m| m.supports(p)))
            .collect()
    }

    /// Each member votes for its most preferred candidate; the most votes wins (ties go to
    /// the candidate the first member prefers).
    fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidates();
        let mut votes: Vec<(String, usize)> = candidates.iter().map(|c| (c.clone(), 0)).collect();
        for m in self.members.values() {
            if let Some((name, _)) = m.protocols.iter().find(|(name, _)| candidates.contains(name)) {
                if let Some(v) = votes.iter_mut().find(|(c, _)| c == name) {
                    v.1 += 1;
                }
            }
        }
        let best = votes.iter().map(|(_, n)| *n).max()?;
        votes.into_iter().find(|(_, n)| *n == best).map(|(c, _)| c)
    }

    /// Whether a joining member's protocols fit the group.
    fn accepts_protocols(&self, protocol_type: &str, protocols: &[(String, Bytes)], member: Option<&str>) -> bool {
        if protocol_type.is_empty() || protocols.is_empty() {
            return false;
        }
        let others: Vec<&Member> = self.members.values().filter(|m| Some(m.member_id.as_str()) != member).collect();
        if others.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        protocols.iter().any(|(p, _)| others.iter().all(|m| m.supports(p)))
    }

    fn fenced(&self, member_id: &str, instance_id: Option<&str>) -> bool {
        instance_id.is_some_and(|i| self.static_members.get(i).is_some_and(|m| m != member_id))
    }

    fn current_join_response(&self, member_id: &str, skip_assignment: bool) -> JoinResponse {
        let is_leader = self.leader.as_deref() == Some(member_id);
        JoinResponse {
            error: NONE,
            member_id: member_id.to_string(),
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol: self.protocol.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            members: if is_leader { self.joined_members() } else { Vec::new() },
            skip_assignment: is_leader && skip_assignment,
        }
    }

    fn joined_members(&self) -> Vec<JoinedMember> {
        let mut members: Vec<&Member> = self.members.values().collect();
        members.sort_by_key(|m| m.seq);
        members
            .into_iter()
            .map(|m| JoinedMember {
                member_id: m.member_id.clone(),
                instance_id: m.instance_id.clone(),
                metadata: m.metadata(self.protocol.as_deref()),
            })
            .collect()
    }

    /// JoinGroup.
    pub(crate) fn join(
        &mut self,
        req: JoinRequest,
        now: i64,
        cfg: &GroupConfig,
        fx: &mut Effects,
    ) -> Outcome<JoinResponse> {
        let reply = |e: ResponseError| Outcome::Reply(JoinResponse::error(code(e), &req.member_id));
        if self.state == GroupState::Dead {
            return reply(ResponseError::CoordinatorNotAvailable);
        }
        if req.session_timeout_ms < cfg.min_session_timeout_ms || req.session_timeout_ms > cfg.max_session_timeout_ms {
            return reply(ResponseError::InvalidSessionTimeout);
        }
        let known = (!req.member_id.is_empty()).then_some(req.member_id.as_str());
        if !self.accepts_protocols(&req.protocol_type, &req.protocols, known) {
            return reply(ResponseError::InconsistentGroupProtocol);
        }
        if req.member_id.is_empty() {
            if let Some(instance) = req.instance_id.clone() {
                if let Some(old) = self.static_members.get(&instance).cloned() {
                    return self.replace_static_member(&old, req, now, cfg, fx);
                }
                let id = req.new_member_id.clone();
                return self.add_member(id, req, now, cfg, fx);
            }
            if req.require_known_member_id {
                self.pending.insert(req.new_member_id.clone(), now + i64::from(req.session_timeout_ms));
                return Outcome::Reply(JoinResponse::error(code(ResponseError::MemberIdRequired), &req.new_member_id));
            }
            let id = req.new_member_id.clone();
            return self.add_member(id, req, now, cfg, fx);
        }
        if self.pending.remove(&req.member_id).is_some() {
            let id = req.member_id.clone();
            return self.add_member(id, req, now, cfg, fx);
        }
        if self.fenced(&req.member_id, req.instance_id.as_deref()) {
            return reply(ResponseError::FencedInstanceId);
        }
        if !self.members.contains_key(&req.member_id) {
            return reply(ResponseError::UnknownMemberId);
        }
        let id = req.member_id.clone();
        let is_leader = self.leader.as_deref() == Some(id.as_str());
        let changed = self.members.get(&id).is_some_and(|m| m.protocols != req.protocols);
        match self.state {
            GroupState::PreparingRebalance => {
                self.update_member(&id, &req, now);
                self.try_complete_join(now, fx);
                Outcome::Parked(id)
            }
            GroupState::CompletingRebalance if !changed => Outcome::Reply(self.current_join_response(&id, false)),
            GroupState::Stable if !changed && !is_leader => Outcome::Reply(self.current_join_response(&id, false)),
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.update_member(&id, &req, now);
                self.prepare_rebalance(now, cfg, fx);
                Outcome::Parked(id)
            }
            GroupState::Empty | GroupState::Dead => reply(ResponseError::UnknownMemberId),
        }
    }

    fn update_member(&mut self, id: &str, req: &JoinRequest, now: i64) {
        if let Some(m) = self.members.get_mut(id) {
            m.protocols = req.protocols.clone();
            m.session_timeout_ms = req.session_timeout_ms;
            m.rebalance_timeout_ms = req.rebalance_timeout_ms;
            m.client_id = req.client_id.clone();
            m.client_host = req.client_host.clone();
            m.awaiting_join = true;
            m.session_deadline = now + i64::from(req.session_timeout_ms);
        }
    }

    fn add_member(
        &mut self,
        id: String,
        req: JoinRequest,
        now: i64,
        cfg: &GroupConfig,
        fx: &mut Effects,
    ) -> Outcome<JoinResponse> {
        if self.members.len() >= cfg.max_size {
            return Outcome::Reply(JoinResponse::error(code(ResponseError::GroupMaxSizeReached), &id));
        }
        if self.members.is_empty() {
            self.protocol_type = Some(req.protocol_type.clone());
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some(i) = &req.instance_id {
            self.static_members.insert(i.clone(), id.clone());
        }
        self.members.insert(
            id.clone(),
            Member {
                member_id: id.clone(),
                instance_id: req.instance_id.clone(),
                client_id: req.client_id,
                client_host: req.client_host,
                session_timeout_ms: req.session_timeout_ms,
                rebalance_timeout_ms: req.rebalance_timeout_ms,
                protocols: req.protocols,
                assignment: Bytes::new(),
                awaiting_join: true,
                awaiting_sync: false,
                session_deadline: now + i64::from(req.session_timeout_ms),
                seq,
            },
        );
        match self.state {
            GroupState::PreparingRebalance => {
                if let Some(d) = &mut self.initial_delay {
                    d.new_members = true;
                }
                self.try_complete_join(now, fx);
            }
            _ => self.prepare_rebalance(now, cfg, fx),
        }
        Outcome::Parked(id)
    }

    /// A static member came back with a new client instance (KIP-345): it takes over the
    /// old member id's place and assignment; the group rebalances only if it must.
    fn replace_static_member(
        &mut self,
        old: &str,
        req: JoinRequest,
        now: i64,
        cfg: &GroupConfig,
        fx: &mut Effects,
    ) -> Outcome<JoinResponse> {
        let Some(mut member) = self.members.remove(old) else {
            return Outcome::Reply(JoinResponse::error(code(ResponseError::UnknownMemberId), ""));
        };
        let fenced = code(ResponseError::FencedInstanceId);
        if member.awaiting_join {
            fx.joins.push((old.to_string(), JoinResponse::error(fenced, old)));
        }
        if member.awaiting_sync {
            fx.syncs.push((old.to_string(), SyncResponse::error(fenced)));
        }
        let id = req.new_member_id.clone();
        let old_protocol = self.protocol.clone();
        member.member_id = id.clone();
        member.client_id = req.client_id.clone();
        member.client_host = req.client_host.clone();
        member.session_timeout_ms = req.session_timeout_ms;
        member.rebalance_timeout_ms = req.rebalance_timeout_ms;
        member.protocols = req.protocols.clone();
        member.awaiting_join = false;
        member.awaiting_sync = false;
        member.session_deadline = now + i64::from(req.session_timeout_ms);
        self.members.insert(id.clone(), member);
        if self.leader.as_deref() == Some(old) {
            self.leader = Some(id.clone());
        }
        if let Some(i) = &req.instance_id {
            self.static_members.insert(i.clone(), id.clone());
        }
        if self.pending_sync.remove(old) {
            self.pending_sync.insert(id.clone());
        }
        fx.removed.push((old.to_string(), "replaced by a new instance of the same group.instance.id"));
        match self.state {
            GroupState::Stable if self.select_protocol() == old_protocol => {
                fx.store_group = true;
                Outcome::Reply(self.current_join_response(&id, true))
            }
            GroupState::PreparingRebalance => {
                if let Some(m) = self.members.get_mut(&id) {
                    m.awaiting_join = true;
                }
                self.try_complete_join(now, fx);
                Outcome::Parked(id)
            }
            _ => {
                if let Some(m) = self.members.get_mut(&id) {
                    m.awaiting_join = true;
                }
                self.prepare_rebalance(now, cfg, fx);
                Outcome::Parked(id)
            }
        }
    }

    fn prepare_rebalance(&mut self, now: i64, cfg: &GroupConfig, fx: &mut Effects) {
        if self.state == GroupState::CompletingRebalance {
            let in_progress = code(ResponseError::RebalanceInProgress);
            for m in self.members.values_mut() {
                m.assignment = Bytes::new();
                if m.awaiting_sync {
                    m.awaiting_sync = false;
                    fx.syncs.push((m.member_id.clone(), SyncResponse::error(in_progress)));
                }
            }
        }
        self.pending_sync.clear();
        self.sync_deadline = None;
        let rebalance_timeout = self.max_rebalance_timeout();
        if self.state == GroupState::Empty {
            let delay = cfg.initial_rebalance_delay_ms.min(rebalance_timeout.max(0));
            self.initial_delay =
                Some(InitialDelay { remaining_ms: (rebalance_timeout - delay).max(0), new_members: false });
            self.join_deadline = Some(now + delay);
        } else {
            self.initial_delay = None;
            self.join_deadline = Some(now + rebalance_timeout);
        }
        self.transition(GroupState::PreparingRebalance, now);
        self.try_complete_join(now, fx);
    }

    fn try_complete_join(&mut self, now: i64, fx: &mut Effects) {
        if self.state == GroupState::PreparingRebalance
            && self.initial_delay.is_none()
            && self.pending.is_empty()
            && self.members.values().all(|m| m.awaiting_join)
        {
            self.complete_join(now, fx);
        }
    }

    fn complete_join(&mut self, now: i64, fx: &mut Effects) {
        let missing: Vec<String> = self
            .members
            .values()
            .filter(|m| !m.awaiting_join && m.instance_id.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        for id in missing {
            self.drop_member(&id, "did not rejoin within the rebalance timeout", fx);
        }
        self.join_deadline = None;
        self.initial_delay = None;
        self.generation += 1;
        if self.members.is_empty() {
            self.protocol = None;
            self.leader = None;
            self.transition(GroupState::Empty, now);
            fx.store_group = true;
            return;
        }
        self.protocol = self.select_protocol();
        if self.leader.as_ref().is_none_or(|l| !self.members.contains_key(l)) {
            let mut by_join: Vec<&Member> = self.members.values().collect();
            by_join.sort_by_key(|m| (!m.awaiting_join, m.seq));
            self.leader = by_join.first().map(|m| m.member_id.clone());
        }
        self.transition(GroupState::CompletingRebalance, now);
        let waiting: Vec<String> =
            self.members.values().filter(|m| m.awaiting_join).map(|m| m.member_id.clone()).collect();
        for id in waiting {
            let response = self.current_join_response(&id, false);
            if let Some(m) = self.members.get_mut(&id) {
                m.awaiting_join = false;
                m.session_deadline = now + i64::from(m.session_timeout_ms);
            }
            fx.joins.push((id, response));
        }
        self.pending_sync = self.members.keys().cloned().collect();
        self.sync_deadline = Some(now + self.max_rebalance_timeout());
    }

    /// Removes a member, answering any request it has parked.
    fn drop_member(&mut self, id: &str, why: &'static str, fx: &mut Effects) {
        let Some(m) = self.members.remove(id) else { return };
        let unknown = code(ResponseError::UnknownMemberId);
        if m.awaiting_join {
            fx.joins.push((id.to_string(), JoinResponse::error(unknown, id)));
        }
        if m.awaiting_sync {
            fx.syncs.push((id.to_string(), SyncResponse::error(unknown)));
        }
        if let Some(i) = &m.instance_id {
            if self.static_members.get(i).is_some_and(|x| x == id) {
                self.static_members.remove(i);
            }
        }
        self.pending_sync.remove(id);
        if self.leader.as_deref() == Some(id) {
            self.leader = None;
        }
        fx.removed.push((id.to_string(), why));
    }

    /// Removes a member and moves the group on (rebalance, or completion of one).
    fn remove_member(&mut self, id: &str, why: &'static str, now: i64, cfg: &GroupConfig, fx: &mut Effects) {
        self.drop_member(id, why, fx);
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => self.prepare_rebalance(now, cfg, fx),
            GroupState::PreparingRebalance => self.try_complete_join(now, fx),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    /// SyncGroup; the leader's call carries everyone's assignment.
    pub(crate) fn sync(
        &mut self,
        who: MemberRef<'_>,
        protocol_type: Option<&str>,
        protocol: Option<&str>,
        assignments: Vec<(String, Bytes)>,
        now: i64,
        fx: &mut Effects,
    ) -> Outcome<SyncResponse> {
        let MemberRef { member_id, instance_id, generation } = who;
        let reply = |e: ResponseError| Outcome::Reply(SyncResponse::error(code(e)));
        if self.state == GroupState::Dead {
            return reply(ResponseError::CoordinatorNotAvailable);
        }
        if self.fenced(member_id, instance_id) {
            return reply(ResponseError::FencedInstanceId);
        }
        if !self.members.contains_key(member_id) {
            return reply(ResponseError::UnknownMemberId);
        }
        if generation != self.generation {
            return reply(ResponseError::IllegalGeneration);
        }
        if protocol_type.is_some_and(|t| Some(t) != self.protocol_type.as_deref())
            || protocol.is_some_and(|p| Some(p) != self.protocol.as_deref())
        {
            return reply(ResponseError::InconsistentGroupProtocol);
        }
        match self.state {
            GroupState::Empty | GroupState::Dead => reply(ResponseError::UnknownMemberId),
            GroupState::PreparingRebalance => reply(ResponseError::RebalanceInProgress),
            GroupState::CompletingRebalance => {
                self.pending_sync.remove(member_id);
                if let Some(m) = self.members.get_mut(member_id) {
                    m.awaiting_sync = true;
                    m.session_deadline = now + i64::from(m.session_timeout_ms);
                }
                if self.leader.as_deref() == Some(member_id) {
                    let mut given: HashMap<String, Bytes> = assignments.into_iter().collect();
                    for m in self.members.values_mut() {
                        m.assignment = given.remove(&m.member_id).unwrap_or_default();
                    }
                    self.transition(GroupState::Stable, now);
                    fx.store_group = true;
                    for m in self.members.values_mut() {
                        if m.awaiting_sync {
                            m.awaiting_sync = false;
                            fx.syncs.push((
                                m.member_id.clone(),
                                SyncResponse {
                                    error: NONE,
                                    protocol_type: self.protocol_type.clone(),
                                    protocol: self.protocol.clone(),
                                    assignment: m.assignment.clone(),
                                },
                            ));
                        }
                    }
                }
                Outcome::Parked(member_id.to_string())
            }
            GroupState::Stable => {
                self.pending_sync.remove(member_id);
                let m = self.members.get_mut(member_id).expect("checked above");
                m.session_deadline = now + i64::from(m.session_timeout_ms);
                Outcome::Reply(SyncResponse {
                    error: NONE,
                    protocol_type: self.protocol_type.clone(),
                    protocol: self.protocol.clone(),
                    assignment: m.assignment.clone(),
                })
            }
        }
    }

    /// Heartbeat: keeps the session alive and tells the member whether to rejoin.
    pub(crate) fn heartbeat(&mut self, who: MemberRef<'_>, now: i64) -> Code {
        let MemberRef { member_id, instance_id, generation } = who;
        if self.state == GroupState::Dead {
            return code(ResponseError::CoordinatorNotAvailable);
        }
        if self.fenced(member_id, instance_id) {
            return code(ResponseError::FencedInstanceId);
        }
        if self.state == GroupState::Empty || !self.members.contains_key(member_id) {
            return code(ResponseError::UnknownMemberId);
        }
        if generation != self.generation {
            return code(ResponseError::IllegalGeneration);
        }
        let m = self.members.get_mut(member_id).expect("checked above");
        m.session_deadline = now + i64::from(m.session_timeout_ms);
        if self.state == GroupState::PreparingRebalance {
            return code(ResponseError::RebalanceInProgress);
        }
        NONE
    }

    /// LeaveGroup for one member (v3+ batches call this per member); `member_id` may be ""
    /// when `instance_id` names it.
    pub(crate) fn leave(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        now: i64,
        cfg: &GroupConfig,
        fx: &mut Effects,
    ) -> Code {
        if self.state == GroupState::Dead {
            return code(ResponseError::CoordinatorNotAvailable);
        }
        let target = match instance_id {
            Some(i) => match self.static_members.get(i) {
                None => return code(ResponseError::UnknownMemberId),
                Some(current) if !member_id.is_empty() && current != member_id => {
                    return code(ResponseError::FencedInstanceId)
                }
                Some(current) => current.clone(),
            },
            None => member_id.to_string(),
        };
        if self.pending.remove(&target).is_some() {
            self.try_complete_join(now, fx);
            return NONE;
        }
        if !self.members.contains_key(&target) {
            return code(ResponseError::UnknownMemberId);
        }
        self.remove_member(&target, "left the group", now, cfg, fx);
        NONE
    }

    /// Whether an OffsetCommit from this member and generation may write offsets.
    ///
    /// # Errors
    /// The Kafka error code that refuses it.
    pub(crate) fn check_commit(&mut self, who: MemberRef<'_>, now: i64) -> Result<(), Code> {
        let MemberRef { member_id, instance_id, generation } = who;
        if self.state == GroupState::Dead {
            return Err(code(ResponseError::CoordinatorNotAvailable));
        }
        if generation < 0 && self.state == GroupState::Empty {
            return Ok(()); // a commit-only consumer (manual assignment), or an admin tool
        }
        if self.fenced(member_id, instance_id) {
            return Err(code(ResponseError::FencedInstanceId));
        }
        if !self.members.contains_key(member_id) {
            return Err(code(ResponseError::UnknownMemberId));
        }
        if generation != self.generation {
            return Err(code(ResponseError::IllegalGeneration));
        }
        if self.state == GroupState::CompletingRebalance {
            return Err(code(ResponseError::RebalanceInProgress));
        }
        let m = self.members.get_mut(member_id).expect("checked above");
        m.session_deadline = now + i64::from(m.session_timeout_ms);
        Ok(())
    }

    /// Advances time: expires pending member ids and sessions, ends the join phase at its
    /// deadline (or the initial delay), and removes members that never synced.
    pub(crate) fn tick(&mut self, now: i64, cfg: &GroupConfig, fx: &mut Effects) {
        if self.state == GroupState::Dead {
            return;
        }
        let before = self.pending.len();
        self.pending.retain(|_, deadline| *deadline > now);
        if self.pending.len() != before {
            self.try_complete_join(now, fx);
        }
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| !m.awaiting_join && !m.awaiting_sync && m.session_deadline <= now)
            .map(|m| m.member_id.clone())
            .collect();
        for id in expired {
            self.remove_member(&id, "session timed out (no heartbeat within session.timeout.ms)", now, cfg, fx);
        }
        if self.state == GroupState::PreparingRebalance && self.join_deadline.is_some_and(|d| d <= now) {
            match self.initial_delay.clone() {
                Some(d) if d.new_members && d.remaining_ms > 0 => {
                    let delay = cfg.initial_rebalance_delay_ms.min(d.remaining_ms);
                    self.initial_delay =
                        Some(InitialDelay { remaining_ms: d.remaining_ms - delay, new_members: false });
                    self.join_deadline = Some(now + delay);
                }
                _ => self.complete_join(now, fx),
            }
        }
        if matches!(self.state, GroupState::CompletingRebalance | GroupState::Stable)
            && self.sync_deadline.is_some_and(|d| d <= now)
        {
            self.sync_deadline = None;
            let unsynced: Vec<String> = std::mem::take(&mut self.pending_sync).into_iter().collect();
            if !unsynced.is_empty() {
                for id in &unsynced {
                    self.drop_member(id, "did not send SyncGroup within the rebalance timeout", fx);
                }
                self.prepare_rebalance(now, cfg, fx);
            }
        }
    }

    /// Forcibly ends the group (deleted, or its coordinator moved): parked requests get
    /// `error`.
    pub(crate) fn kill(&mut self, error: Code, fx: &mut Effects) {
        for m in self.members.values_mut() {
            if m.awaiting_join {
                fx.joins.push((m.member_id.clone(), JoinResponse::error(error, &m.member_id)));
            }
            if m.awaiting_sync {
                fx.syncs.push((m.member_id.clone(), SyncResponse::error(error)));
            }
        }
        self.state = GroupState::Dead;
    }

    /// Topics the members subscribe to (consumer protocol only).
    pub(crate) fn subscribed_topics(&self) -> Option<BTreeSet<String>> {
        use kafka_protocol::messages::ConsumerProtocolSubscription;
        use kafka_protocol::protocol::Decodable;
        if self.protocol_type.as_deref() != Some("consumer") || self.members.is_empty() {
            return None;
        }
        let mut topics = BTreeSet::new();
        for m in self.members.values() {
            let mut raw = m.metadata(self.protocol.as_deref());
            if raw.len() < 2 {
                continue;
            }
            let version = i16::from_be_bytes([raw[0], raw[1]]);
            let _ = bytes::Buf::get_i16(&mut raw);
            if let Ok(sub) = ConsumerProtocolSubscription::decode(&mut raw, version.clamp(0, 3)) {
                topics.extend(sub.topics.iter().map(|t| t.as_str().to_string()));
            }
        }
        Some(topics)
    }

    /// Offsets past their retention: in an Empty group, `retention_ms` after the group
    /// emptied (consumer groups) or after the commit (commit-only groups); in an active
    /// consumer group, offsets of topics nobody subscribes to, `retention_ms` after the commit.
    pub(crate) fn expired_offsets(&self, now: i64, retention_ms: i64) -> Vec<(String, i32)> {
        let subscribed = self.subscribed_topics();
        self.offsets
            .iter()
            .filter(|((topic, _), v)| match self.state {
                GroupState::Empty => {
                    let base = if self.protocol_type.is_some() {
                        self.state_timestamp.max(v.commit_timestamp)
                    } else {
                        v.commit_timestamp
                    };
                    base + retention_ms <= now
                }
                _ => {
                    subscribed.as_ref().is_some_and(|s| !s.contains(topic)) && v.commit_timestamp + retention_ms <= now
                }
            })
            .map(|(k, _)| k.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests;
