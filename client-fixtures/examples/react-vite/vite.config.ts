import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

// Two entries: the page, and a module service worker (`/sw.js`) that imports `@dukasync/client/sw` for
// Background Sync. Chunks shared by both are plain ES modules the worker imports.
export default defineConfig({
  plugins: [react()],
  // `npx vite`: the API on the same origin, as in production behind nginx (DUKASYNC_URL, default a local server).
  server: { proxy: { '/v1': process.env.DUKASYNC_URL ?? 'http://127.0.0.1:8080' } },
  build: {
    target: 'es2022',
    rollupOptions: {
      input: { main: 'index.html', sw: 'src/sw.ts' },
      output: {
        entryFileNames: (chunk) => (chunk.name === 'sw' ? 'sw.js' : 'assets/[name]-[hash].js'),
      },
    },
  },
});
