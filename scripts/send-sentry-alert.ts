// Posts a signed Sentry issue alert ("more than 20 failed logins in 5 min")
// to a running bot, as Sentry's integration would:
//   node --import tsx scripts/send-sentry-alert.ts http://127.0.0.1:3000 <SENTRY_WEBHOOK_SECRET>
import { createHmac } from 'node:crypto';

const [base, secret] = process.argv.slice(2);
if (!base || !secret || !/^http:\/\/127\.0\.0\.1(:\d+)?$/.test(base)) {
  console.error('usage: send-sentry-alert.ts http://127.0.0.1:<port> <SENTRY_WEBHOOK_SECRET>  (loopback only)');
  process.exit(2);
}

const rule = 'runbook-bot: more than 20 failed logins in 5 min';
const body = JSON.stringify({
  action: 'triggered',
  actor: { id: 'sentry', name: 'Sentry', type: 'application' },
  data: {
    event: { event_id: 'demo', issue_id: '1', level: 'warning', title: 'Failed login for admin (23 in 5 min)', web_url: `${base}/` },
    triggered_rule: rule,
    issue_alert: { title: rule, settings: [] },
  },
  installation: { uuid: '00000000-0000-4000-8000-000000000000' },
});
const response = await fetch(`${base}/webhooks/sentry`, {
  method: 'POST',
  headers: {
    'content-type': 'application/json',
    'sentry-hook-resource': 'event_alert',
    'sentry-hook-signature': createHmac('sha256', secret).update(body).digest('hex'),
  },
  body,
});
console.log(`POST /webhooks/sentry: ${response.status} ${await response.text()}`);
if (response.status !== 200) process.exit(1);
