"""The widget catalog: every widget is a declared query over reporting.*.

Queries take their parameters bound ($client_id, $start, $end, $currency), never pasted
in, and every one of them filters on $client_id: a widget only reads its own client's rows.
Sums run over the days start..end (inclusive, the client's days); point-in-time widgets
(MRR, balance) take the value at the end of the `end` day.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from engine.reporting.tables import (
    BALANCE,
    CUSTOMER_COUNTS,
    CUSTOMER_MRR,
    DAILY_REVENUE,
    DELINQUENCY,
    DISPUTES,
    MRR_DAILY,
    PAYMENTS,
    PAYOUTS,
    PLAN_MRR,
    SUBSCRIPTION_SPANS,
    TRIALS,
    ReportingTable,
)

Kind = Literal["number", "line", "bar", "table"]
Unit = Literal["money", "count", "percent", "ratio"]

_CLIENT_CURRENCY = "client_id = $client_id AND currency = $currency"


@dataclass(frozen=True)
class Widget:
    name: str
    title: str
    kind: Kind
    unit: Unit
    description: str
    # The reporting table whose rows mean "there is data" for this client (and currency).
    source: ReportingTable
    value_sql: str
    rows_sql: str | None = None
    currency_scoped: bool = True
    # Valued at the end of the period (MRR, balance) rather than summed over it.
    point_in_time: bool = False
    # For the arrow colour beside a change: more refunds is not good news.
    higher_is_better: bool = True
    # Row columns drawn as series (line and bar widgets), in drawing order.
    series: tuple[str, ...] = ()
    # What Stripe lets the figure be computed from: stream names (engine/streams.py) and
    # `balance`. A key not allowed to read one of them gets no figure, never a wrong one.
    needs: tuple[str, ...] = ()
    # The widget this one is derived from (ARR from MRR): it needs what its base needs.
    based_on: str | None = None
    # Whose published definition the figure follows (rates and subscription analytics).
    definition: str | None = None

    @property
    def parameters(self) -> tuple[str, ...]:
        base = ("client", "start", "end")
        return (*base, "currency") if self.currency_scoped else base

    def describe(self) -> dict:
        return {
            "name": self.name, "title": self.title, "kind": self.kind, "unit": self.unit,
            "parameters": list(self.parameters), "description": self.description,
            "definition": self.definition,
        }


def _sum(table: ReportingTable, column: str, day: str = "day", where: str = "") -> str:
    return (
        f"SELECT coalesce(sum({column}), 0) FROM {table.qualified} "
        f"WHERE {_CLIENT_CURRENCY} AND {day} BETWEEN $start AND $end{where}"
    )


def _latest_mrr(expression: str) -> str:
    return (
        f"SELECT coalesce((SELECT {expression} FROM {MRR_DAILY.qualified} "
        f"WHERE {_CLIENT_CURRENCY} AND day <= $end ORDER BY day DESC LIMIT 1), 0)"
    )


def _latest_balance(column: str) -> str:
    return (
        f"SELECT {column} FROM {BALANCE.qualified} WHERE {_CLIENT_CURRENCY} AND day <= $end "
        "ORDER BY captured_at DESC LIMIT 1"
    )


def _daily(table: ReportingTable, columns: str) -> str:
    """One row per day of the period, zeros on days without any."""
    return (
        f"SELECT d.day::DATE AS day, {columns} "
        "FROM generate_series($start::DATE, $end::DATE, INTERVAL 1 DAY) AS d(day) "
        f"LEFT JOIN {table.qualified} r ON r.client_id = $client_id "
        "AND r.currency = $currency AND r.day = d.day::DATE ORDER BY 1"
    )


def _monthly_rate(lost: str, base: str, gained: str = "0") -> str:
    """100 x lost / (base at a window's start + gained), per 30-day window, averaged.

    The windows end on the period's last day and every 30 days before it, as many whole
    ones as the period holds (at least one: a shorter period reads the 30 days up to its
    end). So a year of a steady 2 % a month shows 2 %, not 24 %. `lost` and `gained` are
    summed over a window's days; `base` is read at the end of the day before it.
    """
    return (
        "WITH windows AS (SELECT CAST($end AS DATE) - CAST(30 * k AS INTEGER) AS e "
        "FROM range(0, greatest(1, (CAST($end AS DATE) - CAST($start AS DATE) + 1) // 30)) "
        "AS t(k)), per_window AS (SELECT w.e, "
        f"sum({lost}) FILTER (WHERE m.day > w.e - 30) AS lost, "
        f"arg_max({base}, m.day) FILTER (WHERE m.day <= w.e - 30) AS base, "
        f"sum({gained}) FILTER (WHERE m.day > w.e - 30) AS gained "
        f"FROM windows w LEFT JOIN {MRR_DAILY.qualified} m ON m.client_id = $client_id "
        "AND m.currency = $currency AND m.day <= w.e GROUP BY w.e) "
        "SELECT avg(100.0 * coalesce(lost, 0) "
        "/ nullif(coalesce(base, 0) + coalesce(gained, 0), 0)) FROM per_window"
    )


def _retention(kept: str, start: str = "$start") -> str:
    """100 x the `kept` MRR at the period's end of the customers paying at its start (s.mrr
    at the end of the day before, e.mrr at the end) / their MRR at the start."""
    at = (f"SELECT customer, arg_max(mrr, day) AS mrr FROM {CUSTOMER_MRR.qualified} "
          f"WHERE {_CLIENT_CURRENCY} AND day {{}} GROUP BY customer")
    return (f"SELECT 100.0 * sum({kept}) / nullif(sum(s.mrr), 0) "
            f"FROM ({at.format('< ' + start)}) s LEFT JOIN ({at.format('<= $end')}) e "
            "USING (customer) WHERE s.mrr > 0")


_TRAILING_YEAR = "CAST($end AS DATE) - 364"  # the 365 days up to the period's end
_ARPA = (f"SELECT mrr / nullif(paying_customers, 0) FROM {MRR_DAILY.qualified} "
         f"WHERE {_CLIENT_CURRENCY} AND day <= $end ORDER BY day DESC LIMIT 1")
_CUSTOMER_CHURN = _monthly_rate("churned_customers", "paying_customers")

# Monthly cohorts (the month of a customer's first paid day, in the period) and, at the
# end of each month since (the period's end for the last), who still pays and their MRR.
_COHORTS = (
    f"WITH cohorts AS (SELECT customer, CAST(date_trunc('month', first_paid_day) AS DATE) "
    f"AS cohort FROM {CUSTOMER_MRR.qualified} WHERE {_CLIENT_CURRENCY} "
    "AND first_paid_day BETWEEN $start AND $end GROUP BY ALL), "
    "months AS (SELECT DISTINCT cohort, m AS month, least(CAST(cohort + to_months(CAST(m + 1 "
    "AS INTEGER)) - INTERVAL 1 DAY AS DATE), CAST($end AS DATE)) AS at_day "
    "FROM cohorts, range(0, 121) AS r(m) WHERE cohort + to_months(CAST(m AS INTEGER)) <= $end), "
    "counts AS (SELECT c.cohort, mo.month, count(*) FILTER (WHERE cm.mrr > 0) AS customers, "
    "coalesce(sum(cm.mrr), 0) AS mrr FROM cohorts c JOIN months mo USING (cohort) "
    f"LEFT JOIN {CUSTOMER_MRR.qualified} cm ON cm.client_id = $client_id "
    "AND cm.currency = $currency AND cm.customer = c.customer AND cm.day <= mo.at_day "
    "AND (cm.until_day IS NULL OR cm.until_day > mo.at_day) GROUP BY ALL) "
    "SELECT strftime(cohort, '%Y-%m') AS cohort, month, customers, "
    "round(100.0 * customers / nullif(first_value(customers) OVER c, 0), 2) AS customers_pct, "
    "mrr, round(100.0 * mrr / nullif(first_value(mrr) OVER c, 0), 2) AS mrr_pct "
    "FROM counts WINDOW c AS (PARTITION BY cohort ORDER BY month)"
)

# The published definitions the rates follow (docs/metrics.md cites the pages).
CHARTMOGUL_CUSTOMER_CHURN = (
    "ChartMogul, customer churn rate: customers lost in the period / customers at its "
    "start, as a monthly rate (per 30 days, averaged over longer periods).")
STRIPE_SUBSCRIBER_CHURN = (
    "Stripe Billing analytics, subscriber churn rate: churned subscribers in a rolling 30 "
    "days / (active subscribers 30 days before + new subscribers in those 30 days); a "
    "subscriber churns when their MRR goes from above zero to zero. Averaged per 30 days "
    "over longer periods.")

_PAYOUTS_PAID = " AND status NOT IN ('failed', 'canceled')"
_CHARGES = ("charges",)
# Net figures take refunds from refunds, fees and disputes from balance transactions.
_NET = ("charges", "refunds", "balance_transactions")
_SUBSCRIPTIONS = ("subscriptions",)  # MRR is computed from subscriptions and their items
_BALANCE = ("balance",)

WIDGETS: tuple[Widget, ...] = (
    Widget(
        "gross_volume", "Gross volume", "number", "money",
        "Captured amount of successful payments created in the period.",
        DAILY_REVENUE, _sum(DAILY_REVENUE, "gross"),
        needs=_CHARGES,
    ),
    Widget(
        "net_volume", "Net volume", "number", "money",
        "Gross volume less refunds, disputes and Stripe fees.",
        DAILY_REVENUE, _sum(DAILY_REVENUE, "net"),
        needs=_NET,
    ),
    Widget(
        "refunds", "Refunds", "number", "money",
        "Refunds issued in the period (failed and canceled refunds left out).",
        DAILY_REVENUE, _sum(DAILY_REVENUE, "refunds"), higher_is_better=False,
        needs=("refunds",),
    ),
    Widget(
        "successful_payments", "Successful payments", "number", "count",
        "Number of charges that succeeded.",
        DAILY_REVENUE, _sum(DAILY_REVENUE, "successful_payments"),
        needs=_CHARGES,
    ),
    Widget(
        "failed_payments", "Failed payments", "number", "count",
        "Number of charges that failed.",
        DAILY_REVENUE, _sum(DAILY_REVENUE, "failed_payments"), higher_is_better=False,
        needs=_CHARGES,
    ),
    Widget(
        "new_customers", "New customers", "number", "count",
        "Customers created in the period (deleted ones left out).",
        CUSTOMER_COUNTS,
        f"SELECT coalesce(sum(new_customers), 0) FROM {CUSTOMER_COUNTS.qualified} "
        "WHERE client_id = $client_id AND day BETWEEN $start AND $end",
        currency_scoped=False,
        needs=("customers",),
    ),
    Widget(
        "mrr", "MRR", "number", "money",
        "Monthly recurring revenue at the end of the period (docs/metrics.md).",
        MRR_DAILY, _latest_mrr("mrr"), point_in_time=True,
        needs=_SUBSCRIPTIONS,
    ),
    Widget(
        "arr", "ARR", "number", "money",
        "Annual run rate: MRR x 12.",
        MRR_DAILY, _latest_mrr("mrr * 12"), point_in_time=True,
        based_on="mrr",
    ),
    Widget(
        "active_subscriptions", "Active subscriptions", "number", "count",
        "Subscriptions counted in MRR at the end of the period.",
        MRR_DAILY, _latest_mrr("active_subscriptions"), point_in_time=True,
        needs=_SUBSCRIPTIONS,
    ),
    Widget(
        "new_subscriptions", "New subscriptions", "number", "count",
        "Subscriptions that started counting in MRR during the period.",
        MRR_DAILY, _sum(MRR_DAILY, "new_subscriptions"),
        needs=_SUBSCRIPTIONS,
    ),
    Widget(
        "churned_subscriptions", "Churned subscriptions", "number", "count",
        "Subscriptions that stopped counting in MRR during the period.",
        MRR_DAILY, _sum(MRR_DAILY, "churned_subscriptions"), higher_is_better=False,
        needs=_SUBSCRIPTIONS,
    ),
    Widget(
        "churn_rate", "Churn rate", "number", "percent",
        "Subscriber churn rate, a monthly rate whatever the period: subscribers who churned "
        "in 30 days / (subscribers 30 days before + new subscribers in those 30 days), "
        "averaged over the period's 30-day windows.",
        MRR_DAILY,
        _monthly_rate("churned_customers", "paying_customers",
                      "new_customers + reactivated_customers"),
        higher_is_better=False,
        needs=_SUBSCRIPTIONS,
        definition=STRIPE_SUBSCRIBER_CHURN,
    ),
    Widget(
        "arpu", "ARPU", "number", "money",
        "Average revenue per paying customer: MRR / customers with MRR, at the period's end.",
        MRR_DAILY,
        f"SELECT mrr / nullif(paying_customers, 0) FROM {MRR_DAILY.qualified} "
        f"WHERE {_CLIENT_CURRENCY} AND day <= $end ORDER BY day DESC LIMIT 1",
        point_in_time=True,
        needs=_SUBSCRIPTIONS,
    ),
    Widget(
        "available_balance", "Available balance", "number", "money",
        "Funds available for payout, as read by the latest sync up to the period's end.",
        BALANCE, _latest_balance("available"), point_in_time=True,
        needs=_BALANCE,
    ),
    Widget(
        "pending_balance", "Pending balance", "number", "money",
        "Funds not yet available, as read by the latest sync up to the period's end.",
        BALANCE, _latest_balance("pending"), point_in_time=True,
        needs=_BALANCE,
    ),
    Widget(
        "revenue_over_time", "Revenue over time", "line", "money",
        "Gross and net volume per day; the value is the period's gross volume.",
        DAILY_REVENUE, _sum(DAILY_REVENUE, "gross"),
        rows_sql=_daily(DAILY_REVENUE, "coalesce(r.gross, 0) AS gross, "
                        "coalesce(r.net, 0) AS net, coalesce(r.refunds, 0) AS refunds"),
        series=("gross", "net"),
        needs=_NET,
    ),
    Widget(
        "mrr_over_time", "MRR over time", "line", "money",
        "MRR at the end of each day; the value is the MRR at the period's end.",
        MRR_DAILY, _latest_mrr("mrr"),
        rows_sql=f"SELECT day, mrr, active_subscriptions FROM {MRR_DAILY.qualified} "
        f"WHERE {_CLIENT_CURRENCY} AND day BETWEEN $start AND $end ORDER BY day",
        point_in_time=True, series=("mrr",),
        needs=_SUBSCRIPTIONS,
    ),
    Widget(
        "mrr_movements", "MRR movements", "bar", "money",
        "New, expansion, reactivation, contraction and churned MRR per day; the value is "
        "the period's net new MRR.",
        MRR_DAILY, _sum(MRR_DAILY, "net_new_mrr"),
        rows_sql="SELECT day, new_mrr, expansion_mrr, reactivation_mrr, contraction_mrr, "
        f"churned_mrr FROM {MRR_DAILY.qualified} WHERE {_CLIENT_CURRENCY} "
        "AND day BETWEEN $start AND $end ORDER BY day",
        series=("new_mrr", "expansion_mrr", "reactivation_mrr", "contraction_mrr",
                "churned_mrr"),
        needs=_SUBSCRIPTIONS,
    ),
    Widget(
        "payouts", "Payouts", "bar", "money",
        "Payouts by expected arrival day (failed and canceled left out); the value is the "
        "period's total.",
        PAYOUTS, _sum(PAYOUTS, "amount", day="arrival_day", where=_PAYOUTS_PAID),
        rows_sql="SELECT arrival_day AS day, sum(amount) AS amount, count(*) AS payouts "
        f"FROM {PAYOUTS.qualified} WHERE {_CLIENT_CURRENCY} "
        f"AND arrival_day BETWEEN $start AND $end{_PAYOUTS_PAID} GROUP BY 1 ORDER BY 1",
        series=("amount",),
        needs=("payouts",),
    ),
    Widget(
        "recent_payments", "Recent payments", "table", "count",
        "The 20 latest payments of the period in every currency; the value is the number of "
        "payments in the period.",
        PAYMENTS,
        f"SELECT count(*) FROM {PAYMENTS.qualified} "
        "WHERE client_id = $client_id AND day BETWEEN $start AND $end",
        rows_sql="SELECT created, id, coalesce(customer_name, customer_email, customer) "
        f"AS customer, amount, currency, status, description FROM {PAYMENTS.qualified} "
        "WHERE client_id = $client_id AND day BETWEEN $start AND $end "
        "ORDER BY created DESC, id LIMIT 20",
        currency_scoped=False,
        needs=("charges", "customers"),
    ),
)

# -- subscription analytics (issue 22): rates follow a published definition ---------------

SUBSCRIPTION_ANALYTICS: tuple[Widget, ...] = (
    Widget(
        "subscription_churn_rate", "Subscription churn rate (period)", "number", "percent",
        "Churned subscriptions in the period / subscriptions active at its start: the rate "
        "over the whole period, not per month (the churn rate before it followed Stripe).",
        MRR_DAILY,
        f"SELECT 100.0 * ({_sum(MRR_DAILY, 'churned_subscriptions')}) / nullif(("
        f"SELECT active_subscriptions FROM {MRR_DAILY.qualified} WHERE {_CLIENT_CURRENCY} "
        "AND day < $start ORDER BY day DESC LIMIT 1), 0)",
        higher_is_better=False, needs=_SUBSCRIPTIONS,
        definition="Ours: churned subscriptions / active subscriptions at the period's start, "
        "over the period (not normalised to a month).",
    ),
    Widget(
        "customer_churn", "Churned customers", "number", "count",
        "Customers whose MRR went from above zero to zero in the period (cancelling one of "
        "two subscriptions is not churn).",
        MRR_DAILY, _sum(MRR_DAILY, "churned_customers"), higher_is_better=False,
        needs=_SUBSCRIPTIONS,
        definition="Stripe Billing analytics: churned subscribers (MRR from above zero to "
        "zero).",
    ),
    Widget(
        "customer_churn_rate", "Customer churn rate", "number", "percent",
        "Customers lost in 30 days / paying customers 30 days before, a monthly rate "
        "averaged over the period's 30-day windows.",
        MRR_DAILY, _monthly_rate("churned_customers", "paying_customers"),
        higher_is_better=False, needs=_SUBSCRIPTIONS, definition=CHARTMOGUL_CUSTOMER_CHURN,
    ),
    Widget(
        "mrr_churn_rate", "Gross MRR churn rate", "number", "percent",
        "MRR lost to churn and contraction in 30 days / MRR 30 days before, a monthly rate "
        "averaged over the period's 30-day windows.",
        MRR_DAILY, _monthly_rate("-(churned_mrr + contraction_mrr)", "mrr"),
        higher_is_better=False, needs=_SUBSCRIPTIONS,
        definition="ChartMogul, gross MRR churn rate: (churned MRR + contraction MRR) / MRR "
        "at the start; per 30 days, averaged over longer periods.",
    ),
    Widget(
        "nrr", "Net revenue retention", "number", "percent",
        "MRR at the period's end of the customers paying at its start (expansion, "
        "contraction and churn included, new customers left out) / their MRR at its start.",
        CUSTOMER_MRR, _retention("coalesce(e.mrr, 0)"), needs=_SUBSCRIPTIONS,
        definition="ChartMogul, net MRR retention: (starting MRR + expansion - contraction - "
        "churn) / starting MRR, for the customers present at the start; over the period.",
    ),
    Widget(
        "grr", "Gross revenue retention", "number", "percent",
        "As net revenue retention, but a customer's MRR counts at most at its start value: "
        "expansion left out, so never above 100 %.",
        CUSTOMER_MRR, _retention("least(coalesce(e.mrr, 0), s.mrr)"), needs=_SUBSCRIPTIONS,
        definition="ChartMogul, gross MRR retention: (starting MRR - contraction - churn) / "
        "starting MRR, for the customers present at the start; over the period.",
    ),
    Widget(
        "nrr_12m", "Net revenue retention, trailing 12 months", "number", "percent",
        "Net revenue retention over the 365 days up to the period's end, whatever the "
        "period.",
        CUSTOMER_MRR, _retention("coalesce(e.mrr, 0)", _TRAILING_YEAR), point_in_time=True,
        needs=_SUBSCRIPTIONS,
        definition="ChartMogul, net MRR retention, over the trailing 12 months.",
    ),
    Widget(
        "grr_12m", "Gross revenue retention, trailing 12 months", "number", "percent",
        "Gross revenue retention over the 365 days up to the period's end, whatever the "
        "period.",
        CUSTOMER_MRR, _retention("least(coalesce(e.mrr, 0), s.mrr)", _TRAILING_YEAR),
        point_in_time=True, needs=_SUBSCRIPTIONS,
        definition="ChartMogul, gross MRR retention, over the trailing 12 months.",
    ),
    Widget(
        "arpa", "ARPA", "number", "money",
        "Average revenue per account: MRR / customers with MRR, at the period's end.",
        MRR_DAILY, _ARPA, point_in_time=True, needs=_SUBSCRIPTIONS,
        definition="ChartMogul, ARPA: MRR / number of paying customers (accounts, not "
        "subscriptions).",
    ),
    Widget(
        "ltv", "Customer lifetime value", "number", "money",
        "LTV = ARPA / customer churn rate (monthly, as a fraction): ARPA at the period's end "
        "over the period's customer churn rate; the row shows both.",
        MRR_DAILY, f"SELECT ({_ARPA}) / nullif(({_CUSTOMER_CHURN}) / 100.0, 0)",
        rows_sql=f"SELECT ({_ARPA}) AS arpa, ({_CUSTOMER_CHURN}) AS customer_churn_rate, "
        f"({_ARPA}) / nullif(({_CUSTOMER_CHURN}) / 100.0, 0) AS ltv, "
        "'ARPA / customer churn rate' AS formula",
        point_in_time=True, needs=_SUBSCRIPTIONS,
        definition="ChartMogul, LTV: ARPA / customer churn rate (without gross margin).",
    ),
    Widget(
        "quick_ratio", "Quick ratio", "number", "ratio",
        "(New + expansion + reactivation MRR) / (churned + contraction MRR) in the period; "
        "above 1, MRR grew.",
        MRR_DAILY,
        "SELECT sum(new_mrr + expansion_mrr + reactivation_mrr) "
        "/ nullif(-sum(churned_mrr + contraction_mrr), 0) "
        f"FROM {MRR_DAILY.qualified} WHERE {_CLIENT_CURRENCY} AND day BETWEEN $start AND $end",
        needs=_SUBSCRIPTIONS,
        definition="ChartMogul (after Mamoon Hamid), quick ratio: (new + expansion + "
        "reactivation MRR) / (churned + contraction MRR).",
    ),
    Widget(
        "new_trials", "New trials", "number", "count",
        "Subscriptions whose trial started in the period.",
        TRIALS,
        f"SELECT count(*) FROM {TRIALS.qualified} WHERE {_CLIENT_CURRENCY} "
        "AND start_day BETWEEN $start AND $end",
        needs=_SUBSCRIPTIONS,
        definition="Ours (the references name none): trials started in the period.",
    ),
    Widget(
        "trial_conversion_rate", "Trial conversion rate", "number", "percent",
        "Trials that ended in the period and became paid subscriptions / trials that ended "
        "in the period (canceled during the trial included).",
        TRIALS,
        "SELECT 100.0 * count(*) FILTER (WHERE converted) / nullif(count(*), 0) "
        f"FROM {TRIALS.qualified} WHERE {_CLIENT_CURRENCY} AND ended "
        "AND end_day BETWEEN $start AND $end",
        needs=_SUBSCRIPTIONS,
        definition="Ours (the references name none): trials ending in the period that "
        "converted to paid / trials ending in the period.",
    ),
    Widget(
        "mrr_by_plan", "MRR by plan", "table", "money",
        "MRR at the period's end by plan (product), largest first; a subscription's MRR is "
        "shared among its plans by their list value. The value is the MRR.",
        PLAN_MRR, _latest_mrr("mrr"),
        rows_sql="SELECT p.plan, p.product, sum(p.mrr) AS mrr, "
        "count(DISTINCT p.subscription_id) AS subscriptions "
        f"FROM {PLAN_MRR.qualified} p JOIN {SUBSCRIPTION_SPANS.qualified} s "
        "ON s.client_id = p.client_id AND s.subscription_id = p.subscription_id "
        "AND s.from_day <= $end AND (s.until_day IS NULL OR s.until_day > $end) "
        "WHERE p.client_id = $client_id AND p.currency = $currency "
        "GROUP BY ALL ORDER BY mrr DESC, p.plan",
        point_in_time=True, needs=(*_SUBSCRIPTIONS, "products"),  # plan names
        definition="Stripe Billing analytics, MRR (active and past_due subscriptions), "
        "broken down by product.",
    ),
    Widget(
        "revenue_by_country", "Revenue by country", "table", "money",
        "Gross volume of the period by the customer's country (their address, else the "
        "billing address, else the card's country), largest first; the value is the total.",
        PAYMENTS,
        f"SELECT coalesce(sum(amount), 0) FROM {PAYMENTS.qualified} WHERE {_CLIENT_CURRENCY} "
        "AND status = 'succeeded' AND day BETWEEN $start AND $end",
        rows_sql="SELECT coalesce(country, 'unknown') AS country, sum(amount) AS gross, "
        f"count(*) AS payments FROM {PAYMENTS.qualified} WHERE {_CLIENT_CURRENCY} "
        "AND status = 'succeeded' AND day BETWEEN $start AND $end "
        "GROUP BY ALL ORDER BY gross DESC, country",
        needs=("charges", "customers"),  # the customer's country first
        definition="Ours: gross volume (successful charges) by customer country.",
    ),
    Widget(
        "cohort_retention", "Cohort retention", "table", "percent",
        "Customers by the month they first paid (cohorts starting in the period): for each "
        "month since, how many still pay and their MRR, as a share of the cohort's first "
        "month. The value is the average share of customers still paying a month later.",
        CUSTOMER_MRR, f"SELECT avg(customers_pct) FROM ({_COHORTS}) WHERE month = 1",
        rows_sql=f"{_COHORTS} ORDER BY cohort, month",
        needs=_SUBSCRIPTIONS,
        definition="ChartMogul, cohort retention: customers (and MRR) of a monthly "
        "cohort still active each month, as a share of the cohort.",
    ),
)

# -- failed subscription payments (issue 22): reporting.delinquency ----------------------

_DELINQUENT = f"{_CLIENT_CURRENCY} AND outcome = $outcome AND day BETWEEN $start AND $end"
_FAILED_PAYMENT_NEEDS = ("subscriptions", "invoices")


def _outcome_mrr(outcome: str) -> str:
    """MRR of the subscriptions with this outcome in the period, each counted once."""
    where = _DELINQUENT.replace("$outcome", f"'{outcome}'")
    return (f"SELECT coalesce(sum(mrr), 0) FROM (SELECT subscription_id, any_value(mrr) AS mrr "
            f"FROM {DELINQUENCY.qualified} WHERE {where} GROUP BY subscription_id)")


def _outcome_rows(outcome: str, columns: str) -> str:
    where = _DELINQUENT.replace("$outcome", f"'{outcome}'")
    return (f"SELECT day, subscription_id, customer, {columns} FROM {DELINQUENCY.qualified} "
            f"WHERE {where} ORDER BY day, subscription_id")


FAILED_PAYMENTS: tuple[Widget, ...] = (
    Widget(
        "delinquent_churn", "Delinquent churn", "number", "money",
        "MRR of subscriptions that stopped because payment failed in the period: canceled "
        "after failed payment retries, or marked unpaid. The rows list each subscription.",
        MRR_DAILY, _outcome_mrr("churned"),
        rows_sql=_outcome_rows("churned", "reason, mrr, invoice_id, amount AS amount_due"),
        higher_is_better=False, needs=_FAILED_PAYMENT_NEEDS,
        definition="Stripe Billing: a subscription churned by failed payment is one Stripe "
        "canceled with cancellation_details.reason payment_failed (or marked unpaid, which "
        "stops its MRR); per subscription, its MRR.",
    ),
    Widget(
        "mrr_recovered", "MRR recovered", "number", "money",
        "MRR of subscriptions whose recurring payment failed at first and was paid later, "
        "on the day it was paid. The rows list each recovered invoice.",
        MRR_DAILY, _outcome_mrr("recovered"),
        rows_sql=_outcome_rows("recovered", "invoice_id, attempts, amount AS amount_paid, mrr"),
        needs=_FAILED_PAYMENT_NEEDS,
        definition="Stripe Billing revenue recovery analytics, recovered payments: recurring "
        "subscription invoices (not the first, nor the first after a trial) whose first "
        "attempt failed and that were paid later; as the MRR of their subscriptions.",
    ),
)


# -- disputes (issue 22): Stripe's dispute rate ----------------------------------------------
_CHARGEBACKS = (f"FROM {DISPUTES.qualified} WHERE {_CLIENT_CURRENCY} AND NOT inquiry "
                "AND day BETWEEN $start AND $end")
_SUCCEEDED = f"({_sum(DAILY_REVENUE, 'successful_payments')})"
DISPUTE_WIDGETS: tuple[Widget, ...] = (
    Widget(
        "disputes", "Disputes", "table", "percent",
        "Dispute rate: charges disputed in the period (chargebacks opened in it; inquiries "
        "left out) / successful charges created in the period. The row gives the disputes' "
        "count and amount, and both charge counts.",
        DAILY_REVENUE,
        f"SELECT 100.0 * (SELECT count(DISTINCT charge) {_CHARGEBACKS}) "
        f"/ nullif({_SUCCEEDED}, 0)",
        rows_sql=f"SELECT count(*) AS disputes, coalesce(sum(amount), 0) AS amount, "
        f"count(DISTINCT charge) AS disputed_charges, {_SUCCEEDED} AS successful_payments "
        f"{_CHARGEBACKS}",
        higher_is_better=False, needs=("disputes", "charges"),
        definition="Stripe, dispute rate: disputes received in a period / successful "
        "charges in the same period (inquiries are not disputes yet and are left out).",
    ),
)

WIDGETS = WIDGETS + SUBSCRIPTION_ANALYTICS + FAILED_PAYMENTS + DISPUTE_WIDGETS
WIDGETS_BY_NAME: dict[str, Widget] = {widget.name: widget for widget in WIDGETS}


class UnknownWidget(KeyError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(name)

    def __str__(self) -> str:
        return f"Unknown widget '{self.name}'. Known: {', '.join(WIDGETS_BY_NAME)}."


def needed_data(widget: Widget) -> tuple[str, ...]:
    """What a widget's figure is computed from, its base's included (ARR follows MRR)."""
    needs = list(widget.needs)
    if widget.based_on:
        needs += [n for n in needed_data(get_widget(widget.based_on)) if n not in needs]
    return tuple(needs)


def widget_catalog() -> list[Widget]:
    return list(WIDGETS)


def get_widget(name: str | Widget) -> Widget:
    if isinstance(name, Widget):
        return name
    try:
        return WIDGETS_BY_NAME[name]
    except KeyError:
        raise UnknownWidget(name) from None
