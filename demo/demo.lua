-- The demo: on the embedded default database, a small sample table and a
-- materialized view over it, created and refreshed through mv.exec.
mv.exec("DROP MATERIALIZED VIEW IF EXISTS demo_totals")
mv.exec("DROP TABLE IF EXISTS demo_orders")
mv.exec("CREATE TABLE demo_orders (id int PRIMARY KEY, customer text NOT NULL, amount numeric(10,2) NOT NULL)")
mv.exec([[INSERT INTO demo_orders SELECT g, 'customer_' || (g % 3), (g * 7 % 100)::numeric
          FROM generate_series(1, 30) g]])
mv.exec([[CREATE MATERIALIZED VIEW demo_totals AS
          SELECT customer, count(*) AS orders, sum(amount) AS total
          FROM demo_orders GROUP BY customer]])
mv.exec("INSERT INTO demo_orders VALUES (31, 'customer_0', 50)")
mv.exec("REFRESH MATERIALIZED VIEW demo_totals")
print(("%-12s %6s %10s"):format("customer", "orders", "total"))
for _, r in ipairs(mv.query("SELECT customer, orders, total FROM demo_totals ORDER BY customer")) do
  print(("%-12s %6d %10.2f"):format(r.customer, r.orders, r.total))
end
