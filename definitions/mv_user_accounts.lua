-- Two tables: each user with the number of accounts and their balance.
view "mv_user_accounts" {
  sql = [[
    SELECT u.id AS user_id, u.email,
           count(a.id) AS accounts,
           coalesce(sum(a.balance_cents), 0) AS balance_cents,
           max(a.plan) AS top_plan
    FROM users u
    LEFT JOIN accounts a ON a.user_id = u.id
    GROUP BY u.id, u.email
  ]],
  strategy = "concurrent",
  unique = { "user_id" },
  comment = "Demo: users and accounts (2 tables)",
}
