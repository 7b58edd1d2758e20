"""Deterministic synthetic data for an e-commerce + SaaS + B2B shop.

Usage::

    python bench/datagen.py --customers N --out DIR [--format csv|parquet|duckdb] [--seed 42]

Writes four tables (``accounts``, ``customers``, ``orders``, ``events``) to ``DIR/<table>.<format>``,
or with ``--format duckdb`` as tables of one DuckDB file, ``DIR/shop.duckdb``.
Everything is generated inside DuckDB with ``range()`` and a hash-based pseudo-random function, so
there are no Python loops: 1M customers (~10M orders, ~20M events) takes seconds, and 10M customers
is a matter of minutes. The same ``--customers``/``--seed`` give byte-identical files (each table is
written ``ORDER BY`` its id, and the randomness is a pure function of (seed, id, salt), implemented
with integer arithmetic only, so it does not depend on DuckDB's internal ``hash()``).

Shape of the data (time range 2022-01-01 .. 2024-07-31; the example project evaluates at
as_of = 2024-06-30, so a month of rows lies in the "future" on purpose):

``accounts`` (B2B companies, ~1 per 10 customers)
    account_id, name, industry (saas, retail, finance, healthcare, manufacturing, education),
    employee_count (Pareto-skewed: median ~12, p90 ~90, p99 ~1,500, max 250k), annual_revenue
    (~employees x log-normal revenue per employee), country, crm (salesforce, hubspot, dynamics,
    pipedrive, zoho, none), cloud (aws, gcp, azure, on_prem), created_at (2005-01-01 .. 2024-07-31).

``customers``
    customer_id, email, country (15 countries, US-heavy), city, birth_date (~8% NULL, ages 18-85
    skewed young), signup_at (2022-01-01 .. 2024-07-31, growing over time: ~4.5% in the 30 days
    before 2024-06-30 and ~5% after it), plan (free/basic/pro/enterprise; B2B users skew to paid
    plans), device (ios/android/web), acquisition_channel, marketing_opt_in, interest
    (psychographic), price_sensitivity (needs-based: bargain/value/premium), account_id (~30% of
    customers, skewed so that low account ids have many users and some accounts have none; members
    sign up after their account was created).

``orders``  (~10 per customer on average, heavily skewed; ~1/3 of customers never order)
    Each buyer has a latent first-order delay after signup (exponential, mean 20 days), a lifetime
    after which they lapse (exponential, mean 450 days; 25% never lapse), a purchase rate
    (log-normal, mean 1.75 orders per 30 active days) and a spend level (log-normal, shifted by
    price sensitivity and B2B). The buyer's orders are spread uniformly over [first order,
    min(lapse, 2024-07-31)], so recency varies and late sign-ups have few orders. amount is
    log-normal-ish (median ~$50, long tail, between 1 and 50,000); status completed ~90% / refunded
    ~6% / cancelled ~4%; channel web/app/store depends on the customer's device.

``events``  (~2x orders)
    session_start / page_view / add_to_cart / checkout / support_ticket (30/40/15/8/7%), spread over
    the customer's active period plus 45 days of browsing after lapsing (1.3-2.4 events per order);
    customers who never order still browse a little (0-6 events in their first 60 days). device is
    the customer's device 85% of the time.

Randomness: ``u(id, salt)`` is murmur3's 32-bit finalizer of (id, seed, salt) scaled to [0, 1); the
large tables split one 32-bit hash into several uniforms with ``bits()`` to save hashing work.

ids are dense and contiguous per customer (order ids of customer 1 come first, ...), not
chronological.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import duckdb

START = "2022-01-01"  # day 0
N_DAYS = 943  # 2022-01-01 .. 2024-07-31 inclusive
MASK = 4294967295  # 2^32 - 1


def choice(u: str, items: Sequence[tuple[str, float]]) -> str:
    """A SQL CASE picking items[k] with probability proportional to its weight, given a U(0,1) column."""
    total = sum(w for _, w in items)
    parts, acc = [], 0.0
    for value, weight in items[:-1]:
        acc += weight / total
        parts.append(f"WHEN {u} < {acc:.6f} THEN '{value}'")
    return f"CASE {' '.join(parts)} ELSE '{items[-1][0]}' END"


def normal(u1: str, u2: str) -> str:
    """Standard normal from two U(0,1) columns (Box-Muller; 1 - u is in (0, 1])."""
    return f"(sqrt(-2 * ln(1 - {u1})) * cos(2 * pi() * {u2}))"


def uniforms(id_col: str, salts: range) -> str:
    """Columns u<salt>: independent U(0,1) values (32-bit resolution) of the id."""
    return ", ".join(f"u({id_col}, {s}) AS u{s}" for s in salts)


def hashes(id_col: str, salts: range) -> str:
    """Columns h<salt>: 32-bit hashes of the id, to be split into several uniforms with bits()."""
    return ", ".join(f"h({id_col}, {s}) AS h{s}" for s in salts)


COUNTRIES = [
    ("US", 30), ("GB", 9), ("DE", 9), ("FR", 7), ("CA", 6), ("BR", 6), ("ES", 5), ("IT", 5),
    ("NL", 4), ("MX", 4), ("JP", 4), ("SE", 3), ("PL", 3), ("AU", 3), ("IN", 2),
]  # fmt: skip
CITIES = {
    "US": ["New York", "Los Angeles", "Chicago", "Houston", "Seattle", "Austin"],
    "GB": ["London", "Manchester", "Birmingham", "Leeds"],
    "DE": ["Berlin", "Munich", "Hamburg", "Cologne"],
    "FR": ["Paris", "Lyon", "Marseille", "Toulouse"],
    "CA": ["Toronto", "Vancouver", "Montreal", "Calgary"],
    "BR": ["Sao Paulo", "Rio de Janeiro", "Belo Horizonte"],
    "ES": ["Madrid", "Barcelona", "Valencia"],
    "IT": ["Rome", "Milan", "Naples", "Turin"],
    "NL": ["Amsterdam", "Rotterdam", "Utrecht"],
    "MX": ["Mexico City", "Guadalajara", "Monterrey"],
    "JP": ["Tokyo", "Osaka", "Yokohama", "Nagoya"],
    "SE": ["Stockholm", "Gothenburg", "Malmo"],
    "PL": ["Warsaw", "Krakow", "Wroclaw", "Gdansk"],
    "AU": ["Sydney", "Melbourne", "Brisbane", "Perth"],
    "IN": ["Bengaluru", "Mumbai", "Delhi", "Hyderabad"],
}
ACCOUNT_PREFIX = [
    "Northwind",
    "Contoso",
    "Globex",
    "Initech",
    "Umbrella",
    "Stark",
    "Wayne",
    "Acme",
    "Hooli",
    "Vandelay",
    "Soylent",
    "Cyberdyne",
    "Tyrell",
    "Wonka",
    "Gringotts",
    "Aperture",
    "Massive",
    "Dunder",
    "Pied Piper",
    "Oceanic",
]
ACCOUNT_SUFFIX = [
    "Labs",
    "Systems",
    "Holdings",
    "Analytics",
    "Logistics",
    "Health",
    "Retail",
    "Capital",
    "Industries",
    "Learning",
    "Software",
    "Group",
]


def sql_list(values: list[str]) -> str:
    return "[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


def pick(u: str, values: list[str]) -> str:
    return f"{sql_list(values)}[1 + CAST(floor({u} * {len(values)}) AS INTEGER)]"


def setup(con: duckdb.DuckDBPyConnection, seed: int) -> None:
    # murmur3's 32-bit finalizer on UBIGINT (every product stays below 2^64), keyed by seed and salt.
    con.execute(
        f"""
        CREATE MACRO _xs16(x) AS xor(x, x >> 16);
        CREATE MACRO _xs13(x) AS xor(x, x >> 13);
        CREATE MACRO _m1(x) AS (x * 2246822507::UBIGINT) & {MASK}::UBIGINT;
        CREATE MACRO _m2(x) AS (x * 3266489909::UBIGINT) & {MASK}::UBIGINT;
        CREATE MACRO fmix(x) AS _xs16(_m2(_xs13(_m1(_xs16(x)))));
        CREATE MACRO h(id, salt) AS
            fmix(((id::UBIGINT & {MASK}::UBIGINT) * 2654435761::UBIGINT
                  + fmix((salt::UBIGINT * 40503 + {seed % (1 << 31)}::UBIGINT * 2654435769) & {MASK}::UBIGINT))
                 & {MASK}::UBIGINT);
        CREATE MACRO u(id, salt) AS h(id, salt) / 4294967296.0;
        -- n bits of a 32-bit hash starting at bit lo, as a uniform in [0, 1) (one hash feeds several)
        CREATE MACRO bits(h, lo, n) AS ((h >> lo) & ((1::UBIGINT << n) - 1)) / (1::UBIGINT << n)::DOUBLE;
        -- day number since {START} + seconds of the day -> TIMESTAMP (via epoch microseconds: fast)
        CREATE MACRO day_ts(d, secs) AS
            make_timestamp((epoch(DATE '{START}')::BIGINT + CAST(d AS BIGINT) * 86400 + CAST(secs AS BIGINT))
                           * 1000000);
        """
    )


def build_accounts(con: duckdb.DuckDBPyConnection, n_accounts: int) -> None:
    con.execute(
        f"""
        CREATE TABLE accounts AS
        WITH r AS (SELECT i AS account_id, {uniforms("i", range(1, 11))} FROM range(1, {
            n_accounts
        } + 1) t(i)),
        e AS (
            SELECT *, CAST(least(250000, floor(5 * power(1 - u3, -1.25))) AS INTEGER) AS employee_count
            FROM r
        )
        SELECT
            account_id,
            {pick("u1", ACCOUNT_PREFIX)} || ' ' || {pick("u2", ACCOUNT_SUFFIX)} || ' '
                || lpad(CAST(account_id AS VARCHAR), 4, '0') AS name,
            {
            choice(
                "u4",
                [
                    ("saas", 26),
                    ("retail", 20),
                    ("finance", 15),
                    ("healthcare", 13),
                    ("manufacturing", 14),
                    ("education", 12),
                ],
            )
        } AS industry,
            employee_count,
            CAST(least(99999999999.99, round(employee_count * exp(ln(120000) + 0.6 * {
            normal("u5", "u6")
        }), 2))
                 AS DECIMAL(14, 2)) AS annual_revenue,
            {
            choice(
                "u7",
                [
                    ("US", 45),
                    ("GB", 12),
                    ("DE", 12),
                    ("FR", 7),
                    ("CA", 7),
                    ("NL", 5),
                    ("SE", 4),
                    ("JP", 4),
                    ("AU", 2),
                    ("IN", 2),
                ],
            )
        } AS country,
            {
            choice(
                "u8",
                [
                    ("salesforce", 35),
                    ("hubspot", 30),
                    ("dynamics", 10),
                    ("pipedrive", 8),
                    ("zoho", 7),
                    ("none", 10),
                ],
            )
        } AS crm,
            {choice("u9", [("aws", 45), ("azure", 25), ("gcp", 20), ("on_prem", 10)])} AS cloud,
            DATE '2005-01-01' + CAST(floor(u10 * (DATE '2024-07-31' - DATE '2005-01-01' + 1)) AS INTEGER)
                AS created_at
        FROM e
        """
    )


def build_customers(con: duckdb.DuckDBPyConnection, n: int, n_accounts: int) -> None:
    city_case = (
        "CASE country "
        + " ".join(f"WHEN '{c}' THEN {pick('u3', cities)}" for c, cities in CITIES.items())
        + " END"
    )
    con.execute(
        f"""
        CREATE TEMP TABLE cust0 AS
        WITH r AS (SELECT i AS customer_id, {uniforms("i", range(1, 31))} FROM range(1, {n} + 1) t(i)),
        a0 AS (
            SELECT *,
                {choice("u1", COUNTRIES)} AS country,
                CASE WHEN u4 < 0.30 THEN 1 + CAST(floor({n_accounts} * u5 * u5) AS BIGINT) END AS account_id,
                {choice("u9", [("bargain", 35), ("value", 45), ("premium", 20)])} AS price_sensitivity,
                {choice("u10", [("ios", 35), ("android", 35), ("web", 30)])} AS device
            FROM r
        ),
        a AS (  -- sign-ups grow over time; members of an account sign up after it was created
            SELECT a0.*,
                greatest(CAST(floor({N_DAYS} * power(u6, 0.7)) AS INTEGER),
                         coalesce(acc.created_at - DATE '{START}', 0)) AS signup_day
            FROM a0 LEFT JOIN accounts acc USING (account_id)
        ),
        b AS (
            SELECT *,
                {city_case} AS city,
                signup_day + CAST(floor(-ln(1 - u11) * 20) AS INTEGER) AS first_day,
                CASE WHEN u13 < 0.25 THEN 100000 ELSE CAST(floor(-ln(1 - u14) * 450) AS INTEGER) END AS lifetime,
                -- orders per 30 active days (log-normal, mean ~1.75)
                exp(ln(1.75) - 0.5 * 0.8 * 0.8 + 0.8 * {normal("u15", "u16")}) AS rate,
                ln(45) + 0.45 * {normal("u17", "u18")}
                    + CASE price_sensitivity WHEN 'premium' THEN 0.6 WHEN 'bargain' THEN -0.35 ELSE 0 END
                    + CASE WHEN account_id IS NOT NULL THEN 0.3 ELSE 0 END AS spend_mu,
                u12 < 0.66 AND signup_day + CAST(floor(-ln(1 - u11) * 20) AS INTEGER) < {N_DAYS} AS buyer
            FROM a
        ),
        c AS (
            SELECT *,
                least(first_day + lifetime, {N_DAYS - 1}) AS end_day,
                CASE WHEN buyer THEN CAST(least(2000, greatest(1, round(
                    rate * (least(first_day + lifetime, {N_DAYS - 1}) - first_day + 1) / 30.0))) AS INTEGER)
                ELSE 0 END AS n_orders
            FROM b
        ),
        d AS (
            SELECT *,
                CASE WHEN buyer THEN CAST(round(n_orders * (1.3 + 1.1 * u19)) AS INTEGER)
                     ELSE CAST(floor(u19 * 7) AS INTEGER) END AS n_events,
                signup_day AS ev_start,
                CASE WHEN buyer THEN least(end_day + 45, {N_DAYS - 1})
                     ELSE least(signup_day + 60, {N_DAYS - 1}) END AS ev_end
            FROM c
        )
        SELECT * FROM d
        """
    )
    # Narrow per-customer latent table for orders/events; ids are allocated by running sums.
    con.execute(
        """
        CREATE TEMP TABLE cust AS
        SELECT customer_id, device, spend_mu, first_day, end_day, n_orders, ev_start, ev_end, n_events,
            coalesce(sum(n_orders) OVER w, 0) AS order_offset,
            coalesce(sum(n_events) OVER w, 0) AS event_offset
        FROM cust0
        WINDOW w AS (ORDER BY customer_id ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
        """
    )
    con.execute(
        f"""
        CREATE TEMP TABLE customers AS
        SELECT
            customer_id,
            CASE WHEN account_id IS NOT NULL
                 THEN 'user' || customer_id || '@acct' || account_id || '.example.com'
                 ELSE 'customer' || customer_id || '@' || {
            pick(
                "u2", ["example.com", "example.org", "example.net", "mail.example", "inbox.example"]
            )
        }
            END AS email,
            country,
            city,
            CASE WHEN u7 >= 0.08 THEN DATE '2024-06-30'
                 - CAST(floor((18 + floor(67 * power(u8, 1.6))) * 365.25 + u20 * 365) AS INTEGER) END AS birth_date,
            day_ts(signup_day, floor(u21 * 86400)) AS signup_at,
            CASE WHEN account_id IS NOT NULL
                 THEN {
            choice("u22", [("free", 10), ("basic", 20), ("pro", 40), ("enterprise", 30)])
        }
                 ELSE {
            choice("u22", [("free", 55), ("basic", 26), ("pro", 16), ("enterprise", 3)])
        } END AS plan,
            device,
            {
            choice(
                "u23",
                [
                    ("organic_search", 25),
                    ("paid_search", 20),
                    ("social", 18),
                    ("referral", 12),
                    ("direct", 10),
                    ("email", 8),
                    ("affiliate", 7),
                ],
            )
        } AS acquisition_channel,
            u24 < 0.58 AS marketing_opt_in,
            {
            choice(
                "u25",
                [
                    ("tech", 22),
                    ("fashion", 20),
                    ("home", 16),
                    ("outdoors", 15),
                    ("fitness", 14),
                    ("travel", 13),
                ],
            )
        } AS interest,
            price_sensitivity,
            account_id
        FROM cust0
        ORDER BY customer_id
        """
    )
    con.execute("DROP TABLE cust0")


def orders_query() -> str:
    return f"""
        WITH x AS (
            SELECT customer_id, first_day, end_day, spend_mu, device, order_offset,
                   unnest(range(n_orders)) AS i
            FROM cust WHERE n_orders > 0
        ),
        y AS (SELECT *, order_offset + i + 1 AS order_id FROM x),
        h AS (SELECT *, {hashes("order_id", range(101, 104))} FROM y),
        z AS (
            SELECT *, bits(h101, 16, 16) AS u_day, bits(h102, 0, 17) AS u_sec,
                   bits(h103, 0, 16) AS u_n1, bits(h103, 16, 16) AS u_n2,
                   bits(h101, 0, 8) AS u_status, bits(h101, 8, 8) AS u_channel
            FROM h
        )
        SELECT
            order_id,
            customer_id,
            day_ts(first_day + floor(u_day * (end_day - first_day + 1)), floor(u_sec * 86400)) AS ordered_at,
            -- per-order noise: triangular (sum of two uniforms, unit variance) around the customer's level
            CAST(least(50000, greatest(1, exp(spend_mu + 0.55 * sqrt(6) * (u_n1 + u_n2 - 1))))
                 AS DECIMAL(12, 2)) AS amount,
            CASE WHEN u_status < 0.90 THEN 'completed' WHEN u_status < 0.96 THEN 'refunded' ELSE 'cancelled' END
                AS status,
            CASE WHEN device = 'web'
                 THEN {choice("u_channel", [("web", 70), ("app", 10), ("store", 20)])}
                 ELSE {choice("u_channel", [("web", 30), ("app", 55), ("store", 15)])} END AS channel
        FROM z
        ORDER BY order_id
    """


def events_query() -> str:
    return f"""
        WITH x AS (
            SELECT customer_id, ev_start, ev_end, device, event_offset, unnest(range(n_events)) AS i
            FROM cust WHERE n_events > 0
        ),
        y AS (SELECT *, event_offset + i + 1 AS event_id FROM x),
        h AS (SELECT *, {hashes("event_id", range(201, 203))} FROM y),
        z AS (
            SELECT *, bits(h201, 16, 16) AS u_day, bits(h202, 0, 17) AS u_sec, bits(h201, 0, 8) AS u_type,
                   bits(h201, 8, 8) AS u_switch, bits(h202, 24, 8) AS u_device
            FROM h
        )
        SELECT
            event_id,
            customer_id,
            day_ts(ev_start + floor(u_day * (ev_end - ev_start + 1)), floor(u_sec * 86400)) AS occurred_at,
            {
        choice(
            "u_type",
            [
                ("session_start", 30),
                ("page_view", 40),
                ("add_to_cart", 15),
                ("checkout", 8),
                ("support_ticket", 7),
            ],
        )
    } AS event_type,
            CASE WHEN u_switch < 0.85 THEN device
                 ELSE {
        choice("u_device", [("ios", 35), ("android", 35), ("web", 30)])
    } END AS device
        FROM z
        ORDER BY event_id
    """


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--customers", type=int, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--format", choices=["csv", "parquet", "duckdb"], default="csv")
    p.add_argument("--seed", type=int, default=42)
    args = p.parse_args(argv)
    if args.customers < 1:
        p.error("--customers must be >= 1")

    t0 = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute("SET preserve_insertion_order = true")
    spill = tempfile.TemporaryDirectory(prefix="segsql-datagen-")  # sorts of 100M+ rows may spill
    con.execute(f"SET temp_directory = '{Path(spill.name).as_posix()}'")
    setup(con, args.seed)
    n_accounts = max(1, (args.customers + 9) // 10)
    build_accounts(con, n_accounts)
    build_customers(con, args.customers, n_accounts)

    copy_opts = (
        "FORMAT csv, HEADER true, DATEFORMAT '%Y-%m-%d', TIMESTAMPFORMAT '%Y-%m-%d %H:%M:%S'"
        if args.format == "csv"
        else "FORMAT parquet"
    )
    queries = {
        "accounts": "SELECT * FROM accounts ORDER BY account_id",
        "customers": "SELECT * FROM customers ORDER BY customer_id",
        "orders": orders_query(),
        "events": events_query(),
    }
    counts = {
        "accounts": "SELECT count(*) FROM accounts",
        "customers": "SELECT count(*) FROM customers",
        "orders": "SELECT sum(n_orders) FROM cust",
        "events": "SELECT sum(n_events) FROM cust",
    }
    database = args.out / "shop.duckdb"
    if args.format == "duckdb":  # one file holding the four tables (replaced, not appended to)
        database.unlink(missing_ok=True)
        con.execute(f"ATTACH '{database.as_posix()}' AS generated")
    for table, query in queries.items():
        path = database if args.format == "duckdb" else args.out / f"{table}.{args.format}"
        t = time.perf_counter()
        if args.format == "duckdb":
            con.execute(f"CREATE TABLE generated.{table} AS {query}")
        else:
            con.execute(f"COPY ({query}) TO '{path.as_posix()}' ({copy_opts})")
        (n,) = con.execute(counts[table]).fetchone() or (0,)
        print(
            f"{table:10s} {n:>12,d} rows  {time.perf_counter() - t:6.1f}s  -> {path}",
            file=sys.stderr,
        )
    con.close()
    spill.cleanup()
    print(f"done in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
