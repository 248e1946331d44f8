-- Four tables: per user, accounts, events, purchases and sessions, and when
-- the user was last seen.
view "mv_user_activity" {
  sql = [[
    WITH ac AS (
      SELECT a.user_id, count(*) AS accounts, sum(a.balance_cents) AS balance_cents
      FROM accounts a GROUP BY a.user_id
    ), ev AS (
      SELECT e.user_id, count(*) AS events,
             count(*) FILTER (WHERE e.kind = 'purchase') AS purchases,
             sum(e.amount_cents) AS revenue_cents,
             max(e.occurred_at) AS last_event_at
      FROM events e GROUP BY e.user_id
    ), se AS (
      SELECT s.user_id, count(*) AS sessions, sum(s.duration_s) AS session_seconds,
             max(s.started_at) AS last_session_at
      FROM sessions s GROUP BY s.user_id
    )
    SELECT u.id AS user_id, u.country,
           coalesce(ac.accounts, 0) AS accounts,
           coalesce(ac.balance_cents, 0) AS balance_cents,
           coalesce(ev.events, 0) AS events,
           coalesce(ev.purchases, 0) AS purchases,
           coalesce(ev.revenue_cents, 0) AS revenue_cents,
           coalesce(se.sessions, 0) AS sessions,
           coalesce(se.session_seconds, 0) AS session_seconds,
           greatest(ev.last_event_at, se.last_session_at) AS last_seen_at
    FROM users u
    LEFT JOIN ac ON ac.user_id = u.id
    LEFT JOIN ev ON ev.user_id = u.id
    LEFT JOIN se ON se.user_id = u.id
  ]],
  strategy = "concurrent",
  unique = { "user_id" },
  indexes = { { "last_seen_at" } },
  comment = "Demo: users, accounts, events and sessions (4 tables)",
}
