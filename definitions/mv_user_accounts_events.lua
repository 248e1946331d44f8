-- Three tables: each user's accounts and the events on them.
view "mv_user_accounts_events" {
  sql = [[
    SELECT u.id AS user_id,
           count(DISTINCT a.id) AS accounts,
           count(e.id) AS events,
           count(DISTINCT e.kind) AS event_kinds,
           coalesce(sum(e.amount_cents), 0) AS revenue_cents,
           max(e.occurred_at) AS last_event_at
    FROM users u
    LEFT JOIN accounts a ON a.user_id = u.id
    LEFT JOIN events e ON e.account_id = a.id
    GROUP BY u.id
  ]],
  strategy = "swap",
  unique = { "user_id" },
  -- write-audit-publish: checked on the new contents before they replace the old
  audit = {
    min_rows = 1,
    not_null = { "user_id" }, unique = { "user_id" },
    sql = { "select count(*) = 0 from {new} where revenue_cents < 0" },
  },
  comment = "Demo: users, accounts and events (3 tables)",
}
