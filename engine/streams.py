"""The Stripe streams, declared as data.

One row per Stripe object drives everything else: which endpoint is paged, which
events update it, which typed columns land in `stripe.<table>`, the Dagster asset
and its column metadata. Adding a Stripe object means adding a StreamSpec here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ColumnType = Literal["VARCHAR", "BIGINT", "DOUBLE", "BOOLEAN", "TIMESTAMPTZ", "JSON"]


@dataclass(frozen=True)
class Column:
    """A warehouse column: stream columns (typed from the Stripe object at `path`, with a
    ColumnType) and the reporting tables' columns (any DuckDB type) alike."""

    name: str
    type: ColumnType | str
    description: str = ""
    # Where the value sits in the Stripe object; defaults to the top-level field of the same name.
    path: tuple[str, ...] = ()
    # Expandable reference: a string id, or an object whose "id" we keep.
    ref: bool = False

    @property
    def source_path(self) -> tuple[str, ...]:
        return self.path or (self.name,)


@dataclass(frozen=True)
class ChildSpec:
    """A list inside each object that gets its own table (subscription items)."""

    table: str
    path: tuple[str, ...]
    parent_column: str
    columns: tuple[Column, ...]
    description: str


@dataclass(frozen=True)
class StreamSpec:
    name: str
    endpoint: str
    object_type: str
    description: str
    columns: tuple[Column, ...]
    event_types: tuple[str, ...] = ()
    # Events that mean the object is gone from Stripe (its row stays, flagged).
    deleted_event_types: tuple[str, ...] = ()
    # Objects that can disappear from lists; a full refresh flags rows it did not see.
    deletable: bool = False
    # Events of other objects that may come with a new object of this stream and no event
    # of its own: the stream lists what was created since its cursor when one is seen.
    new_with: tuple[str, ...] = ()
    list_params: dict[str, str] = field(default_factory=dict)
    children: tuple[ChildSpec, ...] = ()
    # Widgets that read this stream: named in permission warnings. The widget catalog
    # (reports/widgets/catalog.py, `needs`) is the truth; tests/test_widget_needs.py holds
    # these to it.
    widgets: tuple[str, ...] = ()
    # The permission Stripe names when a restricted key may not list the stream, where it
    # is not rak_<object>_read.
    read_permission: str = ""

    @property
    def table(self) -> str:
        return self.name

    @property
    def permission(self) -> str:
        return self.read_permission or f"rak_{self.object_type}_read"


def _id() -> Column:
    return Column("id", "VARCHAR", "Stripe object id")


def _created() -> Column:
    return Column("created", "TIMESTAMPTZ", "When Stripe created the object (UTC)")


def _currency() -> Column:
    return Column("currency", "VARCHAR", "Three-letter ISO currency code, lower case")


def _amount(name: str, what: str) -> Column:
    return Column(name, "BIGINT", f"{what}, in the currency's minor unit (cents; yen for JPY)")


PAYMENT_WIDGETS = ("gross_volume", "net_volume", "successful_payments", "failed_payments",
                   "revenue_over_time", "recent_payments", "revenue_by_country")
SUBSCRIPTION_WIDGETS = ("mrr", "arr", "active_subscriptions", "new_subscriptions",
                        "churned_subscriptions", "churn_rate", "arpu", "mrr_over_time",
                        "mrr_movements", "subscription_churn_rate", "customer_churn",
                        "customer_churn_rate", "mrr_churn_rate", "nrr", "grr", "arpa", "ltv",
                        "quick_ratio", "new_trials", "trial_conversion_rate", "mrr_by_plan",
                        "cohort_retention")

STREAMS: tuple[StreamSpec, ...] = (
    StreamSpec(
        name="charges",
        endpoint="/v1/charges",
        object_type="charge",
        description="Every charge (successful, failed, refunded) on the client's Stripe account.",
        columns=(
            _id(), _created(),
            _amount("amount", "Amount charged"),
            _amount("amount_captured", "Amount captured"),
            _amount("amount_refunded", "Amount refunded so far"),
            _currency(),
            Column("status", "VARCHAR", "succeeded, pending or failed"),
            Column("paid", "BOOLEAN", "Whether the charge succeeded"),
            Column("captured", "BOOLEAN", "Whether the charge was captured"),
            Column("refunded", "BOOLEAN", "Whether the charge was fully refunded"),
            Column("disputed", "BOOLEAN", "Whether the charge has been disputed"),
            Column("customer", "VARCHAR", "Customer id", ref=True),
            Column("payment_intent", "VARCHAR", "PaymentIntent id", ref=True),
            Column("balance_transaction", "VARCHAR", "Balance transaction id", ref=True),
            Column("invoice", "VARCHAR", "Invoice id (older API versions)", ref=True),
            Column("failure_code", "VARCHAR", "Why the charge failed"),
            Column("description", "VARCHAR", "Free-form description"),
        ),
        event_types=(
            "charge.succeeded", "charge.failed", "charge.captured", "charge.refunded",
            "charge.updated", "charge.expired", "charge.pending",
        ),
        widgets=PAYMENT_WIDGETS,
    ),
    StreamSpec(
        name="refunds",
        endpoint="/v1/refunds",
        object_type="refund",
        description="Refunds of charges.",
        columns=(
            _id(), _created(),
            Column("charge", "VARCHAR", "Refunded charge id", ref=True),
            Column("payment_intent", "VARCHAR", "PaymentIntent id", ref=True),
            _amount("amount", "Amount refunded"),
            _currency(),
            Column("status", "VARCHAR", "pending, succeeded, failed or canceled"),
            Column("reason", "VARCHAR", "duplicate, fraudulent or requested_by_customer"),
            Column("balance_transaction", "VARCHAR", "Balance transaction id", ref=True),
        ),
        event_types=("refund.created", "refund.updated", "refund.failed", "charge.refund.updated"),
        # Accounts on API versions before refund.created tell a new refund by the charge.
        new_with=("charge.refunded",),
        widgets=("net_volume", "refunds", "revenue_over_time"),
    ),
    StreamSpec(
        name="customers",
        endpoint="/v1/customers",
        object_type="customer",
        description="Customers; deleted ones keep their row with is_deleted = true.",
        columns=(
            _id(), _created(),
            Column("email", "VARCHAR", "Customer email"),
            Column("name", "VARCHAR", "Customer name"),
            _currency(),
            Column("delinquent", "BOOLEAN", "Whether the latest invoice payment failed"),
            _amount("balance", "Customer balance"),
        ),
        event_types=("customer.created", "customer.updated", "customer.deleted"),
        deleted_event_types=("customer.deleted",),
        deletable=True,
        widgets=("new_customers", "recent_payments", "revenue_by_country"),
    ),
    StreamSpec(
        name="subscriptions",
        endpoint="/v1/subscriptions",
        object_type="subscription",
        description="Subscriptions of every status (status=all), with their items in "
        "stripe.subscription_items.",
        columns=(
            _id(), _created(),
            Column("customer", "VARCHAR", "Customer id", ref=True),
            Column("status", "VARCHAR", "active, past_due, trialing, canceled, incomplete, ..."),
            Column("start_date", "TIMESTAMPTZ", "When the subscription started"),
            Column("cancel_at_period_end", "BOOLEAN", "Cancels when the current period ends"),
            Column("cancel_at", "TIMESTAMPTZ", "When it will be canceled"),
            Column("canceled_at", "TIMESTAMPTZ", "When it was canceled"),
            Column("ended_at", "TIMESTAMPTZ", "When it ended"),
            Column("trial_start", "TIMESTAMPTZ", "Trial start"),
            Column("trial_end", "TIMESTAMPTZ", "Trial end"),
            _currency(),
            Column("discounts", "JSON", "Discounts (ids or expanded objects)"),
        ),
        event_types=(
            "customer.subscription.created", "customer.subscription.updated",
            "customer.subscription.deleted", "customer.subscription.paused",
            "customer.subscription.resumed", "customer.subscription.trial_will_end",
            "customer.subscription.pending_update_applied",
            "customer.subscription.pending_update_expired",
        ),
        list_params={"status": "all"},
        children=(
            ChildSpec(
                table="subscription_items",
                path=("items", "data"),
                parent_column="subscription",
                description="Items (price × quantity) of each subscription.",
                columns=(
                    _id(), _created(),
                    Column("price", "VARCHAR", "Price id", path=("price", "id")),
                    Column("product", "VARCHAR", "Product id", path=("price", "product"), ref=True),
                    Column("quantity", "BIGINT", "Quantity"),
                    Column("unit_amount", "BIGINT", "Price per unit, minor units",
                           path=("price", "unit_amount")),
                    Column("currency", "VARCHAR", "Currency", path=("price", "currency")),
                    Column("interval", "VARCHAR", "day, week, month or year",
                           path=("price", "recurring", "interval")),
                    Column("interval_count", "BIGINT", "Intervals between billings",
                           path=("price", "recurring", "interval_count")),
                    Column("current_period_start", "TIMESTAMPTZ", "Current period start"),
                    Column("current_period_end", "TIMESTAMPTZ", "Current period end"),
                    Column("discounts", "JSON", "Item-level discounts"),
                ),
            ),
        ),
        widgets=SUBSCRIPTION_WIDGETS,
    ),
    StreamSpec(
        name="invoices",
        endpoint="/v1/invoices",
        object_type="invoice",
        description="Invoices; draft invoices deleted in Stripe keep their row flagged.",
        columns=(
            _id(), _created(),
            Column("customer", "VARCHAR", "Customer id", ref=True),
            Column("subscription", "VARCHAR", "Subscription id (older API versions)", ref=True),
            Column("parent_subscription", "VARCHAR", "Subscription id (newer API versions)",
                   path=("parent", "subscription_details", "subscription"), ref=True),
            Column("status", "VARCHAR", "draft, open, paid, uncollectible or void"),
            _currency(),
            _amount("amount_due", "Amount due"),
            _amount("amount_paid", "Amount paid"),
            _amount("total", "Total"),
            Column("period_start", "TIMESTAMPTZ", "Billing period start"),
            Column("period_end", "TIMESTAMPTZ", "Billing period end"),
            Column("billing_reason", "VARCHAR", "Why the invoice was created"),
        ),
        event_types=(
            "invoice.created", "invoice.updated", "invoice.deleted", "invoice.finalized",
            "invoice.paid", "invoice.payment_failed", "invoice.payment_succeeded",
            "invoice.voided", "invoice.marked_uncollectible", "invoice.sent",
        ),
        deleted_event_types=("invoice.deleted",),
        deletable=True,  # no widget reads invoices: MRR comes from subscriptions' items
    ),
    StreamSpec(
        name="balance_transactions",
        endpoint="/v1/balance_transactions",
        object_type="balance_transaction",
        description="Every movement of the Stripe balance, with fees and net amounts.",
        columns=(
            _id(), _created(),
            Column("available_on", "TIMESTAMPTZ", "When the funds become available"),
            Column("type", "VARCHAR", "charge, refund, payout, adjustment, ..."),
            Column("reporting_category", "VARCHAR", "Stripe's reporting category"),
            _amount("amount", "Gross amount"),
            _amount("fee", "Stripe fees"),
            _amount("net", "Net amount"),
            _currency(),
            Column("status", "VARCHAR", "available or pending (at sync time)"),
            Column("source", "VARCHAR", "Object that caused it", ref=True),
        ),
        widgets=("net_volume", "revenue_over_time"),
        read_permission="rak_balance_transaction_source_read",
    ),
    StreamSpec(
        name="payouts",
        endpoint="/v1/payouts",
        object_type="payout",
        description="Payouts from the Stripe balance to the bank.",
        columns=(
            _id(), _created(),
            Column("arrival_date", "TIMESTAMPTZ", "Expected arrival at the bank"),
            _amount("amount", "Amount paid out"),
            _currency(),
            Column("status", "VARCHAR", "paid, pending, in_transit, canceled or failed"),
            Column("method", "VARCHAR", "standard or instant"),
            Column("type", "VARCHAR", "bank_account or card"),
        ),
        event_types=(
            "payout.created", "payout.updated", "payout.paid", "payout.failed",
            "payout.canceled", "payout.reconciliation_completed",
        ),
        widgets=("payouts",),
    ),
    StreamSpec(
        name="products",
        endpoint="/v1/products",
        object_type="product",
        description="Products sold.",
        columns=(
            _id(), _created(),
            Column("active", "BOOLEAN", "Whether it can be bought"),
            Column("name", "VARCHAR", "Product name"),
            Column("description", "VARCHAR", "Product description"),
        ),
        event_types=("product.created", "product.updated", "product.deleted"),
        deleted_event_types=("product.deleted",),
        deletable=True,
        widgets=("mrr_by_plan",),  # plan names
    ),
    StreamSpec(
        name="prices",
        endpoint="/v1/prices",
        object_type="price",
        description="Prices of products, one-time and recurring.",
        columns=(
            _id(), _created(),
            Column("active", "BOOLEAN", "Whether it can be used"),
            Column("product", "VARCHAR", "Product id", ref=True),
            _amount("unit_amount", "Price per unit"),
            _currency(),
            Column("type", "VARCHAR", "one_time or recurring"),
            Column("recurring_interval", "VARCHAR", "day, week, month or year",
                   path=("recurring", "interval")),
            Column("recurring_interval_count", "BIGINT", "Intervals between billings",
                   path=("recurring", "interval_count")),
            Column("nickname", "VARCHAR", "Price nickname"),
        ),
        event_types=("price.created", "price.updated", "price.deleted"),
        deleted_event_types=("price.deleted",),
        deletable=True,
    ),
)

STREAMS_BY_NAME: dict[str, StreamSpec] = {spec.name: spec for spec in STREAMS}

# Columns every stripe.* table carries besides the stream's own.
BOOKKEEPING_COLUMNS: tuple[Column, ...] = (
    Column("client_id", "VARCHAR", "The agency's client this row belongs to"),
    Column("is_deleted", "BOOLEAN", "The object was deleted in Stripe"),
    Column("raw", "JSON", "The whole Stripe object, the JSON text as Stripe sent it"),
    Column("_synced_at", "TIMESTAMPTZ", "When this row was last written by a sync"),
)

BALANCE_COLUMNS: tuple[Column, ...] = (
    Column("client_id", "VARCHAR", "The agency's client"),
    Column("id", "VARCHAR", "currency:captured_at"),
    Column("captured_at", "TIMESTAMPTZ", "When the balance was read"),
    _currency(),
    _amount("available", "Available balance"),
    _amount("pending", "Pending balance"),
    Column("raw", "JSON", "The whole balance object"),
)


def stream_names() -> list[str]:
    return [spec.name for spec in STREAMS]


def resolve_streams(names: list[str] | None) -> list[StreamSpec]:
    """The specs for the named streams (all when None); unknown names get a clear error."""
    if not names:
        return list(STREAMS)
    unknown = [n for n in names if n not in STREAMS_BY_NAME]
    if unknown:
        raise ValueError(
            f"Unknown stream(s): {', '.join(unknown)}. Known: {', '.join(stream_names())}."
        )
    return [STREAMS_BY_NAME[n] for n in names]
