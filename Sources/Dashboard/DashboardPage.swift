/// The dashboard page: one self-contained HTML document (inline CSS and JavaScript, an SVG
/// chart drawn by the script), updated from `/dashboard/events` without reloading.
enum DashboardPage {
    static let html = #"""
<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>LiveSync — live session</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font-family:system-ui,"Noto Sans CJK SC",sans-serif;margin:0;background:#0f172a;color:#e2e8f0}
header{padding:12px 20px;background:#1e293b;display:flex;justify-content:space-between;align-items:center}
h1{font-size:20px;margin:0} h2{font-size:14px;margin:0 0 8px;color:#94a3b8;text-transform:uppercase;letter-spacing:.05em}
main{display:grid;grid-template-columns:repeat(4,1fr);gap:12px;padding:12px 20px}
.card{background:#1e293b;border-radius:8px;padding:12px}
.wide{grid-column:span 2}.full{grid-column:span 4}
.big{font-size:30px;font-weight:700}.ok{color:#4ade80}.bad{color:#f87171}.warn{color:#fbbf24}.muted{color:#94a3b8;font-size:12px}
table{width:100%;border-collapse:collapse;font-size:13px}td,th{padding:3px 6px;text-align:left;border-bottom:1px solid #334155}
th{color:#94a3b8;font-weight:500}
#live{font-size:12px}
</style></head>
<body>
<header><h1>LiveSync — live session</h1><span id="live" class="muted">connecting…</span></header>
<main>
<div class="card"><h2>Orders in ERP book</h2><div class="big" id="total">–</div><div class="muted">synced + failed + cancelled</div></div>
<div class="card"><h2>Synced</h2><div class="big ok" id="synced">–</div><div class="muted">failed (out of stock) <span id="failed" class="bad">–</span> · cancelled <span id="cancelled">–</span> · waiting <span id="waiting" class="warn">–</span></div></div>
<div class="card"><h2>Sync time ingest → ERP</h2><div class="big"><span id="avg">–</span> ms</div><div class="muted">average · p99 <span id="p99">–</span> ms</div></div>
<div class="card"><h2>Unsynced beyond SLA</h2><div class="big" id="late">–</div><div class="muted" id="lateIDs"></div></div>
<div class="card wide"><h2>Orders per minute</h2><svg id="chart" width="100%" height="140" viewBox="0 0 600 140" preserveAspectRatio="none"></svg></div>
<div class="card wide"><h2>Hot SKUs</h2><table><thead><tr><th>SKU</th><th>Available</th><th>Sold (5 min)</th><th>Sell-out in</th></tr></thead><tbody id="hot"></tbody></table></div>
<div class="card"><h2>Out-of-stock rejections</h2><div class="big bad" id="rejected">–</div><table><tbody id="rejections"></tbody></table></div>
<div class="card"><h2>Per platform</h2><table><thead><tr><th>Platform</th><th>Synced</th><th>Failed</th><th>Cancelled</th></tr></thead><tbody id="platforms"></tbody></table></div>
<div class="card wide"><h2>Consumers</h2><table><thead><tr><th>Process</th><th>Health</th><th>Partitions</th><th>Lag</th><th>Last batch</th></tr></thead><tbody id="consumers"></tbody></table></div>
<div class="card wide"><h2>ERP sync 写入 ERP</h2><table><thead><tr><th>Target</th><th>Lag (orders)</th><th>Written/s</th><th>Drain ETA</th><th>Error rate</th><th>Pending 待处理</th><th>Written</th><th>Last error</th></tr></thead><tbody id="erp"></tbody></table></div>
<div class="card wide"><h2>Alerts</h2><table><tbody id="alerts"></tbody></table></div>
<div class="card wide"><h2>Latest orders (buyer masked)</h2><table><thead><tr><th>Order</th><th>Platform</th><th>Status</th><th>Buyer</th><th>Phone</th><th>Sync ms</th></tr></thead><tbody id="recent"></tbody></table></div>
</main>
<script>
const $ = id => document.getElementById(id);
const esc = s => String(s).replace(/[&<>"']/g, c => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;',"'":'&#39;'}[c]));
const ago = us => us ? (Math.max(0, Date.now()*1000 - us)/1e6).toFixed(1) + ' s ago' : 'never';
function rows(id, items, cells) { $(id).innerHTML = items.map(i => '<tr>' + cells(i).map(c => '<td>' + esc(c) + '</td>').join('') + '</tr>').join(''); }
function render(s) {
  $('total').textContent = s.total; $('synced').textContent = s.synced; $('failed').textContent = s.failed;
  $('cancelled').textContent = s.cancelled; $('waiting').textContent = s.waiting;
  $('avg').textContent = s.avgSyncMs; $('p99').textContent = s.p99SyncMs;
  $('late').textContent = s.unsyncedBeyondSla; $('late').className = 'big ' + (s.unsyncedBeyondSla ? 'bad' : 'ok');
  $('lateIDs').textContent = s.unsyncedIDs.join(', ');
  $('rejected').textContent = s.rejectedLines;
  rows('rejections', s.rejections, r => [r.sku, r.lines + ' lines']);
  rows('hot', s.hotSkus, h => [h.sku + '@' + h.warehouse, h.available, h.soldLast5Min, h.available <= 0 ? 'sold out' : (h.minutesToSellOut == null ? '–' : h.minutesToSellOut + ' min')]);
  rows('platforms', s.platforms, p => [p.platform, p.synced, p.failed, p.cancelled]);
  rows('consumers', s.consumers, c => [c.process, c.health, c.partitions ?? '–', c.lag ?? '–', c.lastBatchAtUs == null ? '–' : ago(c.lastBatchAtUs)]);
  rows('erp', s.erp || [], e => [e.target + ' (' + e.kind + ', ' + e.instances + ')', e.lag, e.writtenPerSecond.toFixed(1), e.drainEtaSeconds == null ? '–' : (e.drainEtaSeconds < 0 ? 'stalled' : Math.round(e.drainEtaSeconds) + ' s'), (100*e.errorRate).toFixed(1) + '%', e.pending, e.written, e.lastError]);
  rows('alerts', s.alerts, a => [a.resolvedAtUs ? 'resolved' : 'FIRING', a.kind, a.message]);
  rows('recent', s.recentOrders, o => [o.orderID, o.platform, o.status, o.buyer, o.phone, o.syncMs.toFixed(1)]);
  const m = s.ordersPerMinute, max = Math.max(1, ...m.map(x => x.orders)), w = 600 / Math.max(1, m.length);
  $('chart').innerHTML = m.map((x, i) => { const h = 120 * x.orders / max; return '<rect x="' + (i*w+1) + '" y="' + (130-h) + '" width="' + Math.max(1, w-2) + '" height="' + h + '" fill="#38bdf8"><title>' + x.orders + '</title></rect>'; }).join('');
  const missing = s.unavailable || [];
  $('live').textContent = 'live · updated ' + new Date(s.generatedAtUs/1000).toLocaleTimeString() + (missing.length ? ' · not shown: ' + missing.join('; ') : '');
  $('live').className = missing.length ? 'warn' : 'muted';
  document.body.dataset.generatedAtUs = s.generatedAtUs;
}
const events = new EventSource('/dashboard/events' + location.search);
events.onmessage = e => render(JSON.parse(e.data));
// With ?limit=N the server ends the stream on purpose (headless checks): keep the last status.
events.onerror = () => { if (!location.search.includes('limit=')) $('live').textContent = 'reconnecting…'; };
</script>
</body></html>
"""#
}
