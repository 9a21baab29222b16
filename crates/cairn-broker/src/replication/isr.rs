//! [`LeaderView`]: what a partition leader knows about its followers, and the decisions
//! it takes from that: the high watermark, which followers have fallen out of sync, and
//! which have caught up. A pure value: time is passed in, nothing here does I/O.
//!
//! ## Rules (Kafka's `Partition`/`Replica` semantics)
//! - A follower's *log end offset* is the `fetch_offset` of its latest Fetch: a follower
//!   asks for offset N only once everything below N is appended (and, under the group
//!   commit flush policy, fsynced) on its disk.
//! - A follower is *caught up* at time T if at T it fetched from the leader's log end
//!   offset, or from the log end offset the leader had at its previous fetch (it read
//!   everything there was then). `last_caught_up_ms` is the latest such T.
//! - The high watermark is the smallest log end offset among the ISR, the leader counting
//!   with its own durable offset. A follower whose offset is unknown (no fetch since this
//!   replica became leader) holds the high watermark where it is.
//! - An ISR follower not caught up for more than `replica.lag.time.max.ms` is *lagging*
//!   and the leader proposes to drop it; an out-of-sync follower whose log end offset has
//!   reached the high watermark and the start of the current leader epoch is *caught up*
//!   and the leader proposes to add it back. The proposals go to the controller; the ISR
//!   used here is always the committed one.

use std::collections::BTreeMap;

/// One follower as the leader sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerState {
    /// Log end offset from the follower's latest fetch; -1 until it fetches.
    pub log_end_offset: i64,
    /// Last time the follower was caught up (see the module docs).
    pub last_caught_up_ms: i64,
    /// The leader's log end offset when the follower last fetched.
    last_fetch_leader_leo: i64,
    /// When the follower last fetched.
    last_fetch_ms: i64,
}

/// A leader's view of its followers, valid for one leader epoch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaderView {
    followers: BTreeMap<i32, FollowerState>,
}

impl LeaderView {
    /// The view of a replica that just became leader: every other replica unknown; ISR
    /// members count as caught up now, so they get a full `replica.lag.time.max.ms` to
    /// fetch before they can be dropped.
    pub fn new(me: i32, replicas: &[i32], isr: &[i32], now_ms: i64) -> LeaderView {
        let followers = replicas
            .iter()
            .filter(|&&r| r != me)
            .map(|&r| {
                let caught_up = if isr.contains(&r) { now_ms } else { -1 };
                (
                    r,
                    FollowerState {
                        log_end_offset: -1,
                        last_caught_up_ms: caught_up,
                        last_fetch_leader_leo: -1,
                        last_fetch_ms: -1,
                    },
                )
            })
            .collect();
        LeaderView { followers }
    }

    /// Keeps the followers in step with a changed replica set (reassignment): new
    /// replicas start unknown, removed ones are forgotten.
    pub fn set_replicas(&mut self, me: i32, replicas: &[i32]) {
        self.followers.retain(|r, _| replicas.contains(r));
        for &r in replicas {
            if r != me {
                self.followers.entry(r).or_insert(FollowerState {
                    log_end_offset: -1,
                    last_caught_up_ms: -1,
                    last_fetch_leader_leo: -1,
                    last_fetch_ms: -1,
                });
            }
        }
    }

    /// Forgets what is known of `replica` (it left the ISR): it must fetch again before
    /// it counts as caught up, so a dead follower is never proposed back.
    pub fn reset(&mut self, replica: i32) {
        if let Some(f) = self.followers.get_mut(&replica) {
            f.log_end_offset = -1;
            f.last_fetch_leader_leo = -1;
            f.last_fetch_ms = -1;
        }
    }

    pub fn follower(&self, replica: i32) -> Option<&FollowerState> {
        self.followers.get(&replica)
    }

    /// Records a fetch by `replica` from `fetch_offset` while the leader's log ended at
    /// `leader_leo`. Returns `false` for a broker that is not a follower of this partition.
    pub fn on_fetch(
        &mut self,
        replica: i32,
        fetch_offset: i64,
        leader_leo: i64,
        now_ms: i64,
    ) -> bool {
        let Some(f) = self.followers.get_mut(&replica) else {
            return false;
        };
        if fetch_offset >= leader_leo {
            f.last_caught_up_ms = f.last_caught_up_ms.max(now_ms);
        } else if f.last_fetch_leader_leo >= 0 && fetch_offset >= f.last_fetch_leader_leo {
            f.last_caught_up_ms = f.last_caught_up_ms.max(f.last_fetch_ms);
        }
        f.log_end_offset = fetch_offset;
        f.last_fetch_leader_leo = leader_leo;
        f.last_fetch_ms = now_ms;
        true
    }

    /// The high watermark the ISR allows: the smallest of `leader_durable` and the ISR
    /// followers' log end offsets (`None` while an ISR follower's offset is unknown).
    pub fn high_watermark(&self, me: i32, isr: &[i32], leader_durable: i64) -> Option<i64> {
        let mut hw = leader_durable;
        for &r in isr {
            if r == me {
                continue;
            }
            let leo = self.followers.get(&r).map_or(-1, |f| f.log_end_offset);
            if leo < 0 {
                return None;
            }
            hw = hw.min(leo);
        }
        Some(hw)
    }

    /// ISR followers that have not been caught up for more than `lag_max_ms`.
    pub fn lagging(&self, me: i32, isr: &[i32], now_ms: i64, lag_max_ms: i64) -> Vec<i32> {
        isr.iter()
            .copied()
            .filter(|&r| r != me)
            .filter(|r| {
                self.followers
                    .get(r)
                    .is_none_or(|f| now_ms.saturating_sub(f.last_caught_up_ms) > lag_max_ms)
            })
            .collect()
    }

    /// Out-of-sync followers whose log end offset has reached both the high watermark and
    /// `epoch_start_offset` (where the current leader epoch began), so adding them to the
    /// ISR cannot hold the high watermark back or let them lead with a stale log.
    pub fn caught_up(&self, isr: &[i32], high_watermark: i64, epoch_start_offset: i64) -> Vec<i32> {
        self.followers
            .iter()
            .filter(|(r, f)| {
                !isr.contains(r)
                    && f.log_end_offset >= 0
                    && f.log_end_offset >= high_watermark
                    && f.log_end_offset >= epoch_start_offset
            })
            .map(|(&r, _)| r)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn high_watermark_is_the_smallest_isr_offset() {
        let mut v = LeaderView::new(1, &[1, 2, 3], &[1, 2, 3], 0);
        assert_eq!(
            v.high_watermark(1, &[1, 2, 3], 10),
            None,
            "followers unknown"
        );
        v.on_fetch(2, 7, 10, 1);
        v.on_fetch(3, 10, 10, 1);
        assert_eq!(v.high_watermark(1, &[1, 2, 3], 10), Some(7));
        assert_eq!(v.high_watermark(1, &[1, 3], 10), Some(10));
        assert_eq!(
            v.high_watermark(1, &[1, 3], 4),
            Some(4),
            "leader not yet durable"
        );
        assert_eq!(v.high_watermark(1, &[1], 4), Some(4));
    }

    #[test]
    fn lagging_and_caught_up() {
        let mut v = LeaderView::new(1, &[1, 2, 3], &[1, 2], 0);
        // 2 keeps fetching the leader's end; 3 never fetched and is out of sync.
        v.on_fetch(2, 5, 5, 100);
        assert!(v.lagging(1, &[1, 2], 200, 150).is_empty());
        assert_eq!(v.lagging(1, &[1, 2], 300, 150), vec![2]);
        // 2 fetched everything the leader had at its previous fetch: caught up then.
        v.on_fetch(2, 5, 9, 290);
        v.on_fetch(2, 9, 12, 310);
        assert_eq!(v.follower(2).unwrap().last_caught_up_ms, 290);
        assert!(v.caught_up(&[1, 2], 9, 0).is_empty());
        v.on_fetch(3, 8, 12, 320);
        assert!(
            v.caught_up(&[1, 2], 9, 0).is_empty(),
            "below the high watermark"
        );
        v.on_fetch(3, 9, 12, 330);
        assert_eq!(v.caught_up(&[1, 2], 9, 0), vec![3]);
        assert!(
            v.caught_up(&[1, 2], 9, 10).is_empty(),
            "below the epoch start"
        );
        assert!(!v.on_fetch(4, 0, 12, 340), "not a replica");
    }
}
