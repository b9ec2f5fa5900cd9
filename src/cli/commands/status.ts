import type { Command } from 'commander';
import { queryProxyStatus } from '../../proxy/status-client.js';
import type { ProxyStatusReport } from '../../proxy/proxy.js';
import { secretOption } from '../secrets.js';

const statusToken = secretOption('token', 'status', "the proxy's status token (`proxy start --status-token`), if it has one (sent only as a MAC bound to the connection)");

export function registerStatus(program: Command): void {
  const command = program
    .command('status')
    .description("Show a proxy's registered servers (routing IDs), VC counts, bytes each way and uptime.")
    .argument('<proxy-endpoint>', 'the endpoint `proxy start` printed (ridp://host:port/<rid>): the proxy must prove that routing id')
    .option('--insecure-any-proxy', 'accept whatever process answers at a host:port that names no routing id (its key is not checked)')
    .option('--json', 'print the report as JSON')
    .addHelpText('after', '\nExample:\n  $ npx proxy status ridp://127.0.0.1:8100/9a0c...');
  statusToken.addTo(command).action(async (endpoint: string, options: { json?: boolean; insecureAnyProxy?: boolean }) => {
    const token = await statusToken.resolve(options);
    const report = await queryProxyStatus(endpoint, { token: token?.value, allowUnpinnedProxy: options.insecureAnyProxy });
    process.stdout.write(options.json ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report));
  });
}

export function formatReport(report: ProxyStatusReport): string {
  const lines = [
    `proxy      ${report.endpoint}`,
    `uptime     ${formatDuration(report.uptimeSeconds)}`,
    `connections ${report.connections}, VCs ${report.vcs}, forwarded ${formatBytes(report.bytesForwarded)}`,
    '',
  ];
  const header = ['ROUTING ID', 'FROM', 'VCS', 'SENT', 'RECEIVED', 'CONNECTED'];
  const rows = report.servers.map((s) => [s.routingId, s.address, String(s.vcs), formatBytes(s.bytesSent), formatBytes(s.bytesReceived), formatDuration(s.connectedSeconds)]);
  if (rows.length === 0) {
    lines.push('no servers registered');
  } else {
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
    for (const row of [header, ...rows]) lines.push(row.map((cell, i) => cell.padEnd(widths[i])).join('  ').trimEnd());
  }
  return `${lines.join('\n')}\n`;
}

function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

function formatDuration(seconds: number): string {
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : m > 0 ? `${m}m${String(s).padStart(2, '0')}s` : `${s}s`;
}
