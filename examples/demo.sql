-- The quickstart's demo database (examples/demo.db is built from this file).
CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price REAL NOT NULL, stock INTEGER NOT NULL);
CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL, card_number TEXT NOT NULL);
CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL REFERENCES customers(id),
                     product_id INTEGER NOT NULL REFERENCES products(id), quantity INTEGER NOT NULL, placed_at TEXT NOT NULL);
INSERT INTO products VALUES (1, 'tea', 3.50, 12), (2, 'coffee', 4.00, 85), (3, 'cake', 5.25, 20), (4, 'scone', 2.75, 40);
INSERT INTO customers VALUES (1, 'Ada', 'ada@example.com', '4111111111111111'),
                             (2, 'Grace', 'grace@example.com', '5500000000000004'),
                             (3, 'Alan', 'alan@example.com', '340000000000009');
INSERT INTO orders VALUES (1, 1, 1, 2, '2026-11-01T09:12:00Z'), (2, 2, 2, 1, '2026-11-01T10:40:00Z'),
                          (3, 1, 3, 1, '2026-11-02T15:05:00Z'), (4, 3, 2, 3, '2026-11-03T08:30:00Z'),
                          (5, 2, 4, 2, '2026-11-03T11:55:00Z');
