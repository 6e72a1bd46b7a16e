// The app's service worker: add Workbox / vite-plugin-pwa caching here as usual; dukasync's module replays the
// outbox on Background Sync (`dukasync-outbox:<scope>`), with no page open.
import { registerOutboxSync } from '@dukasync/client/sw';

registerOutboxSync(self, {
  onReplay: (scope, error) => {
    if (error) console.warn(`dukasync: replay of ${scope} will be retried`, error);
  },
});
