// The cost estimator: monthly cost of the sandboxes as they are now, from their templates'
// resources and unit prices the user sets (remembered in this browser).

import { useEffect, useMemo, useState } from "react";
import { costs, listSandboxes, listTemplates } from "../api/endpoints";
import { Bars } from "../components/Charts";
import { ErrorNote, Loading } from "../components/Notice";
import { DEFAULT_PRICES, estimate, HOURS_PER_MONTH, money, type Prices } from "../lib/cost";
import { usePoll } from "../lib/usePoll";

const PRICES_KEY = "agenttier.prices";

function loadPrices(): Prices {
  try {
    return { ...DEFAULT_PRICES, ...(JSON.parse(localStorage.getItem(PRICES_KEY) ?? "{}") as Partial<Prices>) };
  } catch {
    return DEFAULT_PRICES;
  }
}

export default function CostsPage() {
  const sandboxes = usePoll(listSandboxes, 5000);
  const templates = usePoll(listTemplates, 30_000);
  const server = usePoll(costs, 30_000);
  const [prices, setPrices] = useState<Prices>(loadPrices);

  useEffect(() => {
    localStorage.setItem(PRICES_KEY, JSON.stringify(prices));
  }, [prices]);

  const result = useMemo(
    () => estimate(sandboxes.data ?? [], templates.data ?? [], prices),
    [sandboxes.data, templates.data, prices],
  );

  const priceField = (key: keyof Prices, label: string, help: string) => (
    <div className="field">
      <label htmlFor={`price-${key}`}>{label}</label>
      <input
        id={`price-${key}`}
        type="number"
        min={0}
        step="0.001"
        value={prices[key]}
        onChange={(e) => setPrices({ ...prices, [key]: Math.max(0, Number(e.target.value) || 0) })}
        aria-describedby={`price-${key}-help`}
      />
      <p id={`price-${key}-help`} className="help">
        {help}
      </p>
    </div>
  );

  return (
    <section aria-labelledby="costs-title">
      <div className="page-head">
        <div>
          <h1 id="costs-title">Cost estimator</h1>
          <p className="muted">
            Running sandboxes pay for their CPU and memory limits; every sandbox pays for its storage. A month is{" "}
            {HOURS_PER_MONTH} hours.
          </p>
        </div>
      </div>
      <ErrorNote>{sandboxes.error || templates.error}</ErrorNote>
      <form className="prices" onSubmit={(e) => e.preventDefault()} aria-label="Unit prices">
        {priceField("cpuHour", "Price per vCPU-hour", "USD per core per hour")}
        {priceField("memGibHour", "Price per GiB-hour of memory", "USD per GiB per hour")}
        {priceField("storageGibMonth", "Price per GiB-month of storage", "USD per GiB per month")}
        <button type="button" onClick={() => setPrices(DEFAULT_PRICES)}>
          Reset prices
        </button>
      </form>
      {!sandboxes.data || !templates.data ? (
        <Loading />
      ) : (
        <>
          <div className="stats">
            <div className="stat">
              <span className="stat-label">Estimated monthly cost</span>
              <span className="stat-value" data-testid="monthly-total">
                {money(result.monthly)}
              </span>
            </div>
            <div className="stat">
              <span className="stat-label">Compute per hour</span>
              <span className="stat-value">{money(result.hourlyCompute)}</span>
              <span className="muted small">{result.running} running</span>
            </div>
            <div className="stat">
              <span className="stat-label">Storage per month</span>
              <span className="stat-value">{money(result.monthlyStorage)}</span>
              <span className="muted small">{result.running + result.stopped} workspaces</span>
            </div>
          </div>
          <Bars
            title="Monthly cost by template (USD, rounded)"
            bars={result.lines.map((l) => ({ label: l.template, value: Math.round(l.monthly * 100) / 100 }))}
          />
          <table className="table">
            <caption className="sr-only">Monthly cost by template</caption>
            <thead>
              <tr>
                <th scope="col">Template</th>
                <th scope="col" className="num">Running</th>
                <th scope="col" className="num">Stopped</th>
                <th scope="col" className="num">vCPU / memory / storage each</th>
                <th scope="col" className="num">Compute / month</th>
                <th scope="col" className="num">Storage / month</th>
                <th scope="col" className="num">Total / month</th>
              </tr>
            </thead>
            <tbody>
              {result.lines.length === 0 && (
                <tr>
                  <td colSpan={7} className="muted">
                    No sandboxes, no cost.
                  </td>
                </tr>
              )}
              {result.lines.map((l) => (
                <tr key={l.template}>
                  <td>{l.template}</td>
                  <td className="num">{l.running}</td>
                  <td className="num">{l.stopped}</td>
                  <td className="num">
                    {l.footprint.cpu} / {+l.footprint.memGib.toFixed(2)} GiB / {+l.footprint.storageGib.toFixed(1)} GiB
                  </td>
                  <td className="num">{money(l.monthlyCompute)}</td>
                  <td className="num">{money(l.monthlyStorage)}</td>
                  <td className="num">
                    <strong>{money(l.monthly)}</strong>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
          {server.data && server.data.total_estimated_monthly !== undefined && (
            <p className="muted">
              The server's own estimate (fixed reference prices): {money(server.data.total_estimated_monthly)} per month.
            </p>
          )}
        </>
      )}
    </section>
  );
}
