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
    """A list inside each object that gets its own table (subscription items, invoice
    lines)."""

    table: str
    path: tuple[str, ...]
    parent_column: str
    columns: tuple[Column, ...]
    description: str
    # Where the rest of the list is paged when the parent embeds only its first items
    # (`has_more`): `{id}` is the parent's id, in the path or in a parameter.
    more_endpoint: str = ""
    more_params: dict[str, str] = field(default_factory=dict)
    # Whether the parent's `raw` keeps the items too. False: they live in the child table
    # only, and the parent's `raw` keeps the list without them (`data` empty, `has_more`
    # true when there were any). An invoice with 60 lines is ~70 KB of JSON: kept twice,
    # and parsed by DuckDB at every write, that took a first sync past 900 MB.
    in_parent_raw: bool = True

    @property
    def items_column(self) -> str:
        """The column of a batch of parent rows carrying the items cut out of their raw."""
        return f"_{self.table}"


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
    # Events of other objects that change one of this stream's objects without an event of
    # its own (a dispute flags its charge `disputed`): the object they name in this field is
    # fetched again. (event type, field of the event's object holding this stream's id)
    refetch_with: tuple[tuple[str, str], ...] = ()
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
                        "nrr_12m", "grr_12m",
                        "cohort_retention",
                        "delinquent_churn", "mrr_recovered")

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
        # Stripe sends no charge.updated when a charge is disputed, only the dispute's events.
        refetch_with=tuple((f"charge.dispute.{change}", "charge") for change in (
            "created", "closed", "funds_withdrawn", "funds_reinstated")),
        widgets=(*PAYMENT_WIDGETS, "disputes"),  # the dispute rate's denominator
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
                # A subscription embeds its first 10 items; the rest are paged.
                more_endpoint="/v1/subscription_items",
                more_params={"subscription": "{id}"},
                in_parent_raw=False,
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
        deletable=True,
        widgets=("delinquent_churn", "mrr_recovered"),  # failed and recovered payments
        children=(
            ChildSpec(
                table="invoice_line_items",
                path=("lines", "data"),
                parent_column="invoice",
                description="Lines of each invoice (subscription items billed, invoice items).",
                columns=(
                    _id(),
                    _amount("amount", "Line amount before discounts and taxes"),
                    _currency(),
                    Column("description", "VARCHAR", "What the line bills"),
                    Column("quantity", "BIGINT", "Quantity"),
                    Column("period_start", "TIMESTAMPTZ", "Start of the period billed",
                           path=("period", "start")),
                    Column("period_end", "TIMESTAMPTZ", "End of the period billed",
                           path=("period", "end")),
                    Column("price", "VARCHAR", "Price id (newer API versions)",
                           path=("pricing", "price_details", "price"), ref=True),
                    Column("product", "VARCHAR", "Product id (newer API versions)",
                           path=("pricing", "price_details", "product"), ref=True),
                    Column("subscription", "VARCHAR", "Subscription id (older API versions)",
                           ref=True),
                    Column("subscription_item", "VARCHAR", "Subscription item billed",
                           path=("parent", "subscription_item_details", "subscription_item"),
                           ref=True),
                    Column("proration", "BOOLEAN", "Whether the line is a proration",
                           path=("parent", "subscription_item_details", "proration")),
                    Column("discountable", "BOOLEAN", "Whether discounts apply to it"),
                    Column("discount_amounts", "JSON", "Discount amounts on the line"),
                ),
                # An invoice embeds its first lines; the rest are paged.
                more_endpoint="/v1/invoices/{id}/lines",
                in_parent_raw=False,
            ),
        ),
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
    StreamSpec(
        name="disputes",
        endpoint="/v1/disputes",
        object_type="dispute",
        description="Disputes (chargebacks and inquiries) of charges.",
        columns=(
            _id(), _created(),
            Column("charge", "VARCHAR", "Disputed charge id", ref=True),
            Column("payment_intent", "VARCHAR", "PaymentIntent id", ref=True),
            _amount("amount", "Amount disputed"),
            _currency(),
            Column("status", "VARCHAR", "warning_needs_response, needs_response, "
                   "under_review, won, lost, ..."),
            Column("reason", "VARCHAR", "fraudulent, duplicate, product_not_received, ..."),
            Column("is_charge_refundable", "BOOLEAN", "Whether the charge can still be "
                   "refunded"),
            Column("evidence_due_by", "TIMESTAMPTZ", "When evidence must be submitted",
                   path=("evidence_details", "due_by")),
        ),
        event_types=(
            "charge.dispute.created", "charge.dispute.updated", "charge.dispute.closed",
            "charge.dispute.funds_withdrawn", "charge.dispute.funds_reinstated",
        ),
        widgets=("disputes",),
    ),
    StreamSpec(
        name="coupons",
        endpoint="/v1/coupons",
        object_type="coupon",
        description="Coupons (discount definitions); deleted ones keep their row flagged.",
        columns=(
            _id(), _created(),
            Column("name", "VARCHAR", "Coupon name shown to customers"),
            Column("percent_off", "DOUBLE", "Percentage off (or null)"),
            _amount("amount_off", "Amount off (or null)"),
            _currency(),
            Column("duration", "VARCHAR", "forever, once or repeating"),
            Column("duration_in_months", "BIGINT", "Months a repeating coupon lasts"),
            Column("max_redemptions", "BIGINT", "Times it can be redeemed at most"),
            Column("times_redeemed", "BIGINT", "Times it has been redeemed"),
            Column("redeem_by", "TIMESTAMPTZ", "Last moment it can be redeemed"),
            Column("valid", "BOOLEAN", "Whether it can still be applied"),
        ),
        event_types=("coupon.created", "coupon.updated", "coupon.deleted"),
        deleted_event_types=("coupon.deleted",),
        deletable=True,
    ),
    StreamSpec(
        name="credit_notes",
        endpoint="/v1/credit_notes",
        object_type="credit_note",
        description="Credit notes that reduce finalized invoices.",
        columns=(
            _id(), _created(),
            Column("invoice", "VARCHAR", "Invoice credited", ref=True),
            Column("customer", "VARCHAR", "Customer id", ref=True),
            Column("number", "VARCHAR", "Credit note number"),
            _amount("amount", "Total credited, taxes included"),
            _amount("subtotal", "Amount credited before taxes and discounts"),
            _amount("out_of_band_amount", "Amount credited outside Stripe"),
            _currency(),
            Column("status", "VARCHAR", "issued or void"),
            Column("type", "VARCHAR", "pre_payment or post_payment"),
            Column("reason", "VARCHAR", "duplicate, fraudulent, order_change, "
                   "product_unsatisfactory or null"),
            Column("effective_at", "TIMESTAMPTZ", "When it takes effect"),
            Column("voided_at", "TIMESTAMPTZ", "When it was voided"),
        ),
        event_types=("credit_note.created", "credit_note.updated", "credit_note.voided"),
    ),
    StreamSpec(
        name="payment_intents",
        endpoint="/v1/payment_intents",
        object_type="payment_intent",
        description="PaymentIntents: each payment's whole lifecycle, attempts included.",
        columns=(
            _id(), _created(),
            _amount("amount", "Amount intended to be collected"),
            _amount("amount_received", "Amount received"),
            _amount("amount_capturable", "Amount that can still be captured"),
            _currency(),
            Column("status", "VARCHAR", "requires_payment_method, requires_action, "
                   "processing, succeeded, canceled, ..."),
            Column("customer", "VARCHAR", "Customer id", ref=True),
            Column("latest_charge", "VARCHAR", "Latest charge id", ref=True),
            Column("payment_method", "VARCHAR", "PaymentMethod id", ref=True),
            Column("capture_method", "VARCHAR", "automatic, automatic_async or manual"),
            Column("canceled_at", "TIMESTAMPTZ", "When it was canceled"),
            Column("cancellation_reason", "VARCHAR", "Why it was canceled"),
            Column("last_payment_error_code", "VARCHAR", "Why the last attempt failed",
                   path=("last_payment_error", "code")),
            Column("description", "VARCHAR", "Free-form description"),
        ),
        event_types=(
            "payment_intent.created", "payment_intent.succeeded",
            "payment_intent.payment_failed", "payment_intent.canceled",
            "payment_intent.processing", "payment_intent.requires_action",
            "payment_intent.amount_capturable_updated", "payment_intent.partially_funded",
        ),
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
