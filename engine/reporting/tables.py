"""The prepared reporting tables, declared as data.

Each table names its columns (with types and meanings), the SQL file beside this module
that computes one client's rows, and the stripe.* tables it reads. The DDL, the Dagster
asset specs (with their column schema) and the build order all come from this list.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from engine.streams import Column
from engine.table_comments import TableDoc
from engine.warehouse import table_ddl

SQL_DIR = Path(__file__).with_name("sql")
MONEY = "DECIMAL(18,4)"

# replace: the client's rows are deleted and computed afresh.
# snapshot: only today's rows are replaced; earlier days are history no rebuild can recompute.
BuildMode = Literal["replace", "snapshot"]


@dataclass(frozen=True)
class ReportingTable:
    name: str
    description: str
    columns: tuple[Column, ...]
    reads: tuple[str, ...]  # stripe.* tables
    mode: BuildMode = "replace"
    # Rows are inserted in this order so DuckDB's min/max zone maps skip other clients' rows.
    order_by: str = "client_id"

    @property
    def qualified(self) -> str:
        return f"reporting.{self.name}"

    @property
    def sql_path(self) -> Path:
        return SQL_DIR / f"{self.name}.sql"

    def select_sql(self) -> str:
        return self.sql_path.read_text()

    def ddl(self) -> str:
        return table_ddl(self.qualified, self.columns)

    @property
    def doc(self) -> TableDoc:
        """What its COMMENTs say: the description and columns its Dagster asset shows."""
        return TableDoc(self.qualified, self.description, self.columns)

    def added_columns(self) -> list[str]:
        """Columns added since a warehouse was created, added to it (its rows are rebuilt)."""
        return [f'ALTER TABLE {self.qualified} ADD COLUMN IF NOT EXISTS "{c.name}" {c.type}'
                for c in self.columns]


def _c(name: str, type_: str, description: str) -> Column:
    return Column(name, type_, description)


CLIENT = _c("client_id", "VARCHAR", "The agency's client")
CURRENCY = _c("currency", "VARCHAR", "Three-letter ISO code, lower case")
DAY = _c("day", "DATE", "Calendar day in the client's time zone (clients.yaml timezone, "
           "default UTC)")


def _money(name: str, description: str) -> Column:
    return _c(name, MONEY, f"{description}, in major units of the currency (12.34 USD, 1234 JPY)")


def _minor(name: str, major: str) -> Column:
    """The integer Stripe sent, beside its major-unit column `major`: the convention of
    reporting.* (docs/metrics.md, Conventions) where a row is one Stripe object."""
    return _c(name, "BIGINT", f"{major} in the currency's minor unit, as Stripe sends it "
              "(1234 = 12.34 USD; 1234 = 1234 JPY)")


REPORTING_TABLES: tuple[ReportingTable, ...] = (
    ReportingTable(
        name="daily_revenue",
        description="Payments per day and currency: gross volume of successful charges, "
        "refunds, disputes, Stripe fees and net volume, with payment counts.",
        columns=(
            CLIENT, DAY, CURRENCY,
            _money("gross", "Captured amount of successful charges created that day"),
            _money("refunds", "Refunds created that day (not failed or canceled)"),
            _money("disputes", "Disputed amounts withdrawn that day, less dispute reversals"),
            _money("fees", "Stripe fees of balance transactions created that day "
                   "(settlement currency)"),
            _money("net", "gross - refunds - disputes - fees"),
            _c("successful_payments", "BIGINT", "Charges that succeeded"),
            _c("failed_payments", "BIGINT", "Charges that failed"),
            _c("refund_count", "BIGINT", "Refunds created"),
        ),
        reads=("charges", "refunds", "balance_transactions"),
        order_by="client_id, currency, day",
    ),
    ReportingTable(
        name="payments",
        description="One row per charge without its raw JSON, with the customer's name and "
        "email: the recent payments table and payment drill-downs.",
        columns=(
            CLIENT,
            _c("id", "VARCHAR", "Charge id"),
            _c("created", "TIMESTAMPTZ", "When the charge was created (UTC)"),
            DAY, CURRENCY,
            _money("amount", "Amount charged"),
            _minor("amount_minor", "amount"),
            _money("amount_refunded", "Amount refunded so far"),
            _minor("amount_refunded_minor", "amount_refunded"),
            _c("status", "VARCHAR", "succeeded, pending or failed"),
            _c("refunded", "BOOLEAN", "Fully refunded"),
            _c("disputed", "BOOLEAN", "Disputed"),
            _c("customer", "VARCHAR", "Customer id"),
            _c("customer_name", "VARCHAR", "Customer name"),
            _c("customer_email", "VARCHAR", "Customer email"),
            _c("description", "VARCHAR", "Charge description"),
            _c("failure_code", "VARCHAR", "Why it failed"),
            _c("country", "VARCHAR", "Customer's country (ISO code): their address, else the "
               "charge's billing address, else the card's country"),
        ),
        reads=("charges", "customers"),
        order_by="client_id, created",
    ),
    ReportingTable(
        name="customer_counts",
        description="New customers per day and the running total (deleted customers excluded).",
        columns=(
            CLIENT, DAY,
            _c("new_customers", "BIGINT", "Customers created that day"),
            _c("total_customers", "BIGINT", "Customers created up to that day"),
        ),
        reads=("customers",),
        order_by="client_id, day",
    ),
    ReportingTable(
        name="subscription_mrr",
        description="Each subscription's monthly recurring revenue now (intervals normalised to "
        "a month, quantities, forever discounts) and the time span it counts in MRR. "
        "See docs/metrics.md.",
        columns=(
            CLIENT,
            _c("subscription_id", "VARCHAR", "Subscription id"),
            _c("customer", "VARCHAR", "Customer id"),
            _c("status", "VARCHAR", "Subscription status now"),
            CURRENCY,
            _c("interval", "VARCHAR", "Billing interval (day, week, month, year)"),
            _c("interval_count", "BIGINT", "Intervals between billings"),
            _c("items", "BIGINT", "Licensed recurring items counted"),
            _c("quantity", "BIGINT", "Total quantity of those items"),
            _money("list_mrr", "Monthly value before discounts"),
            _money("discount_mrr", "Monthly value of forever discounts"),
            _money("mrr", "Monthly value after forever discounts"),
            _c("counted_from", "TIMESTAMPTZ", "Start of the span it counts in MRR "
               "(start, or trial end); null when it never counts"),
            _c("counted_until", "TIMESTAMPTZ", "When it stopped counting (ended); null if not"),
            _c("in_mrr", "BOOLEAN", "Counted in MRR at build time"),
            _c("cancel_at_period_end", "BOOLEAN", "Cancels when the current period ends"),
            _c("cancel_at", "TIMESTAMPTZ", "When it is set to be canceled"),
        ),
        reads=("subscriptions", "subscription_items"),
        order_by="client_id, subscription_id",
    ),
    ReportingTable(
        name="subscription_mrr_history",
        description="What each build saw: a subscription's MRR and status from the day a build "
        "first saw them. Stripe keeps only current items, so plan changes come from here.",
        columns=(
            CLIENT,
            _c("subscription_id", "VARCHAR", "Subscription id"),
            _c("day", "DATE", "First day (client's time zone) this MRR and status were seen"),
            CURRENCY,
            _money("mrr", "Monthly value after forever discounts"),
            _c("status", "VARCHAR", "Subscription status seen"),
        ),
        reads=("subscriptions", "subscription_items"),
        mode="snapshot",
        order_by="client_id, subscription_id, day",
    ),
    ReportingTable(
        name="trials",
        description="Every subscription that had a trial: its start and end, and whether it "
        "converted (counted in MRR from the trial's end).",
        columns=(
            CLIENT,
            _c("subscription_id", "VARCHAR", "Subscription id"),
            _c("customer", "VARCHAR", "Customer id"),
            CURRENCY,
            _c("trial_start", "TIMESTAMPTZ", "When the trial started"),
            _c("trial_end", "TIMESTAMPTZ", "When it ended (or ends): the trial's end, or the "
               "subscription's end if canceled during the trial"),
            _c("start_day", "DATE", "Day (client's time zone) the trial started"),
            _c("end_day", "DATE", "Day (client's time zone) the trial ended (or ends)"),
            _c("ended", "BOOLEAN", "The trial has ended at build time"),
            _c("converted", "BOOLEAN", "Became a paid subscription when the trial ended"),
        ),
        reads=("subscriptions", "subscription_items"),
        order_by="client_id, currency, start_day",
    ),
    ReportingTable(
        name="plan_mrr",
        description="Each subscription's MRR shared among its current plans (price and "
        "product) by their list value: MRR by plan.",
        columns=(
            CLIENT,
            _c("subscription_id", "VARCHAR", "Subscription id"),
            _c("price", "VARCHAR", "Price id"),
            _c("product", "VARCHAR", "Product id"),
            _c("plan", "VARCHAR", "Product name (else product or price id)"),
            CURRENCY,
            _c("items", "BIGINT", "Subscription items on this price"),
            _money("mrr", "The plan's share of the subscription's MRR"),
        ),
        reads=("subscriptions", "subscription_items", "products"),
        order_by="client_id, currency, subscription_id",
    ),
    ReportingTable(
        name="subscription_spans",
        description="The spans of days in which each subscription counts in MRR, with its "
        "MRR in each (from its history): what MRR, churn and retention add up.",
        columns=(
            CLIENT,
            _c("subscription_id", "VARCHAR", "Subscription id"),
            _c("customer", "VARCHAR", "Customer id"),
            CURRENCY,
            _c("from_day", "DATE", "First day (client's time zone) it counts with this MRR"),
            _c("until_day", "DATE", "Day it stopped counting with this MRR (exclusive); "
               "null while it still counts"),
            _money("mrr", "Monthly value after forever discounts"),
        ),
        reads=("subscriptions", "subscription_items"),
        order_by="client_id, currency, subscription_id, from_day",
    ),
    ReportingTable(
        name="customer_mrr",
        description="Each customer's MRR per currency, one row per day it changed: churn, "
        "reactivation, retention and cohorts are judged per customer from here.",
        columns=(
            CLIENT,
            _c("customer", "VARCHAR", "Customer id"),
            CURRENCY,
            DAY,
            _c("until_day", "DATE", "Day of the customer's next change (null: none yet)"),
            _money("previous_mrr", "The customer's MRR at the end of the day before"),
            _money("mrr", "The customer's MRR at the end of the day"),
            _c("paid_before", "BOOLEAN", "The customer had MRR on an earlier day"),
            _c("first_paid_day", "DATE", "First day the customer had MRR (the cohort)"),
        ),
        reads=("subscriptions", "subscription_items"),
        order_by="client_id, currency, customer, day",
    ),
    ReportingTable(
        name="mrr_daily",
        description="MRR per day and currency (end of the client's day) with its movements "
        "(new, expansion, contraction, churn, reactivation), active subscriptions and "
        "paying customers. Currencies are never added together.",
        columns=(
            CLIENT, DAY, CURRENCY,
            _money("mrr", "Monthly recurring revenue at the end of the day"),
            _money("new_mrr", "MRR of customers paying for the first time"),
            _money("expansion_mrr", "Increases of paying customers' MRR"),
            _money("contraction_mrr", "Decreases of paying customers' MRR (negative)"),
            _money("churned_mrr", "MRR of customers who stopped paying (negative)"),
            _money("reactivation_mrr", "MRR of customers paying again after churning"),
            _money("net_new_mrr", "Sum of the movements: mrr minus the previous day's"),
            _c("active_subscriptions", "BIGINT", "Subscriptions counted in MRR"),
            _c("new_subscriptions", "BIGINT", "Subscriptions counted for the first time"),
            _c("churned_subscriptions", "BIGINT", "Subscriptions that stopped counting"),
            _c("paying_customers", "BIGINT", "Customers with MRR above zero"),
            _c("new_customers", "BIGINT", "Customers whose MRR went above zero for the "
               "first time that day"),
            _c("reactivated_customers", "BIGINT", "Customers whose MRR went above zero again "
               "after having churned"),
            _c("churned_customers", "BIGINT", "Customers whose MRR went from above zero to "
               "zero that day (Stripe's churned subscribers)"),
        ),
        reads=("subscriptions", "subscription_items"),
        order_by="client_id, currency, day",
    ),
    # -- failed subscription payments (issue 22): delinquent churn, MRR recovered --------
    ReportingTable(
        name="delinquency",
        description="Failed subscription payments and how they ended: recovered (a recurring "
        "invoice paid after a failed first attempt) or churned (the subscription canceled "
        "because payment failed, or marked unpaid). See docs/metrics.md.",
        columns=(
            CLIENT,
            _c("subscription_id", "VARCHAR", "Subscription id"),
            _c("customer", "VARCHAR", "Customer id"),
            CURRENCY,
            _c("outcome", "VARCHAR", "recovered or churned"),
            _c("day", "DATE", "Day (client's time zone) of the outcome: the invoice paid, the "
               "subscription ended, or first seen unpaid"),
            _c("invoice_id", "VARCHAR", "The recovered invoice; for a churn, the subscription's "
               "latest unpaid invoice (null when none was synced)"),
            _c("attempts", "BIGINT", "Payment attempts of that invoice (Stripe's attempt_count)"),
            _c("reason", "VARCHAR", "payment_recovered; payment_failed (Stripe's "
               "cancellation_details.reason) or unpaid (status) for a churn"),
            _money("amount", "The invoice's amount paid (recovered) or due (churned)"),
            _minor("amount_minor", "amount"),
            _money("mrr", "The subscription's MRR (after forever discounts)"),
        ),
        reads=("subscriptions", "subscription_items", "invoices"),
        order_by="client_id, currency, day",
    ),
    ReportingTable(
        name="balance",
        description="The Stripe balance per currency at every sync: available and pending.",
        columns=(
            CLIENT,
            _c("captured_at", "TIMESTAMPTZ", "When the balance was read"),
            DAY, CURRENCY,
            _money("available", "Available balance"),
            _minor("available_minor", "available"),
            _money("pending", "Pending balance"),
            _minor("pending_minor", "pending"),
        ),
        reads=("balance",),
        order_by="client_id, currency, captured_at",
    ),
    ReportingTable(
        name="payouts",
        description="Payouts to the bank with their expected arrival day.",
        columns=(
            CLIENT,
            _c("id", "VARCHAR", "Payout id"),
            _c("created", "TIMESTAMPTZ", "When the payout was created"),
            _c("arrival_day", "DATE", "Expected arrival at the bank (Stripe's date, the same "
               "in every time zone)"),
            CURRENCY,
            _money("amount", "Amount paid out"),
            _minor("amount_minor", "amount"),
            _c("status", "VARCHAR", "paid, pending, in_transit, canceled or failed"),
            _c("method", "VARCHAR", "standard or instant"),
        ),
        reads=("payouts",),
        order_by="client_id, currency, arrival_day",
    ),
    ReportingTable(
        name="disputes",
        description="One row per dispute (chargebacks and inquiries) of the client's charges, "
        "on the day it was opened: the disputes widget.",
        columns=(
            CLIENT,
            _c("id", "VARCHAR", "Dispute id"),
            _c("charge", "VARCHAR", "Disputed charge id"),
            _c("created", "TIMESTAMPTZ", "When the dispute was opened (UTC)"),
            DAY, CURRENCY,
            _money("amount", "Amount disputed"),
            _c("status", "VARCHAR", "warning_needs_response, needs_response, under_review, "
               "won, lost, ..."),
            _c("reason", "VARCHAR", "fraudulent, duplicate, product_not_received, ..."),
            _c("inquiry", "BOOLEAN", "An inquiry (status warning_*), not a chargeback: left "
               "out of the dispute rate"),
        ),
        reads=("disputes",),
        order_by="client_id, currency, day",
    ),
    ReportingTable(
        name="currencies",
        description="The client's currencies with their decimals; the main currency (most "
        "successful payments, then most active subscriptions) is what widgets default to.",
        columns=(
            CLIENT, CURRENCY,
            _c("exponent", "BIGINT", "Decimals of the major unit (0 for JPY, 2 for USD)"),
            _c("successful_payments", "BIGINT", "Successful charges ever"),
            _c("active_subscriptions", "BIGINT", "Subscriptions in MRR now"),
            _c("is_main", "BOOLEAN", "The default currency of the client's widgets"),
        ),
        reads=("charges", "subscriptions", "balance", "payouts"),
        order_by="client_id, currency",
    ),
    ReportingTable(
        name="freshness",
        description="When the client's reporting tables were built and how recent the synced "
        "data they were built from is.",
        columns=(
            CLIENT,
            _c("built_at", "TIMESTAMPTZ", "When the reporting tables were built"),
            _c("synced_at", "TIMESTAMPTZ", "Latest write of a sync to the client's stripe.* rows"),
        ),
        reads=("charges", "refunds", "customers", "subscriptions", "balance_transactions",
               "payouts", "balance"),
    ),
    ReportingTable(
        name="clients",
        description="One row per client: its name, time zone, main currency, connection "
        "state and last successful sync. Start here, then join on client_id.",
        columns=(
            CLIENT,
            _c("name", "VARCHAR", "The client's display name (clients.yaml name, else its id)"),
            _c("timezone", "VARCHAR", "IANA time zone whose calendar days every day column "
               "of reporting.* uses"),
            _c("currency", "VARCHAR", "Main currency (reporting.currencies is_main), lower "
               "case; null before any payment, subscription or balance"),
            _c("state", "VARCHAR", "Connection state when the tables were built: connected, "
               "failed, disconnected or waiting for first sync (null when built outside a sync)"),
            _c("last_sync_at", "TIMESTAMPTZ", "When the client's last successful sync "
               "finished (its reporting tables were built then)"),
        ),
        reads=("charges", "subscriptions", "balance", "payouts"),
    ),
)

REPORTING_TABLES_BY_NAME = {table.name: table for table in REPORTING_TABLES}

# The tables by name, for the readers (widgets, freshness): a renamed table fails at import.
DAILY_REVENUE = REPORTING_TABLES_BY_NAME["daily_revenue"]
PAYMENTS = REPORTING_TABLES_BY_NAME["payments"]
CUSTOMER_COUNTS = REPORTING_TABLES_BY_NAME["customer_counts"]
SUBSCRIPTION_MRR = REPORTING_TABLES_BY_NAME["subscription_mrr"]
MRR_DAILY = REPORTING_TABLES_BY_NAME["mrr_daily"]
CUSTOMER_MRR = REPORTING_TABLES_BY_NAME["customer_mrr"]
SUBSCRIPTION_SPANS = REPORTING_TABLES_BY_NAME["subscription_spans"]
TRIALS = REPORTING_TABLES_BY_NAME["trials"]
PLAN_MRR = REPORTING_TABLES_BY_NAME["plan_mrr"]
BALANCE = REPORTING_TABLES_BY_NAME["balance"]
PAYOUTS = REPORTING_TABLES_BY_NAME["payouts"]
DISPUTES = REPORTING_TABLES_BY_NAME["disputes"]
CURRENCIES = REPORTING_TABLES_BY_NAME["currencies"]
FRESHNESS = REPORTING_TABLES_BY_NAME["freshness"]
CLIENTS = REPORTING_TABLES_BY_NAME["clients"]
DELINQUENCY = REPORTING_TABLES_BY_NAME["delinquency"]
