-- One table: every user, as the application lists them.
view "mv_users" {
  sql = [[
    SELECT u.id AS user_id, u.email, u.name, u.country, u.status, u.created_at
    FROM users u
  ]],
  strategy = "regular",
  unique = { "user_id" },
  comment = "Demo: users (1 table)",
}
