<?php
/*
 * featpkg PBX shim: the one place that finds and runs the bundled static
 * featpkg binary. Shared by both PBXs: MikoPBX autoloads it as
 * Modules\ModuleFeatpkg\Lib\FeatpkgRunner from the module directory, FreePBX's
 * Featpkg.class.php and functions.inc.php require_once it.
 *
 * Every decision (what to install, whether a change is allowed, how to reload)
 * is featpkg's. This file only builds argument lists for the featpkg CLI
 * contract and runs the binary (proc_open with an argument array: no shell).
 */

namespace Modules\ModuleFeatpkg\Lib;

use RuntimeException;

class FeatpkgRunner
{
    /** MikoPBX: parameters the admin set (`--params`), kept in the module's db/ across upgrades. */
    public const MIKOPBX_PARAMS = 'db/featpkg-params.json';

    /** MikoPBX: module settings; `{"allow_restart": true}` lets featpkg restart Asterisk. */
    public const MIKOPBX_SETTINGS = 'db/featpkg-settings.json';

    /** MikoPBX: featpkg's `load =>` lines, which the module's generateModulesConf() hook returns. */
    public const MIKOPBX_MODULES_HOOK = 'db/hooks/generateModulesConf.conf';

    /**
     * Seconds a run waits for another featpkg run on this PBX: MikoPBX calls the
     * enable/disable hooks a second time from another process a few seconds
     * later (ReloadModuleStateAction). Below MikoPBX's 30 s module mutex.
     */
    public const LOCK_WAIT = 25;

    /** The parameters the settings page saved, in its data directory (MikoPBX: db/, FreePBX: FREEPBX_DATA_DIR). */
    public const PARAMS_FILE = 'featpkg-params.json';

    /**
     * The admin's selection, in the page's data directory next to PARAMS_FILE:
     * `{"features": [ids]}`, this bundle's features installed after the last
     * change made from the settings page (bin/featpkg-job.php writes it). The
     * module hooks install exactly these (--features); without the file,
     * featpkg's default (every feature it can).
     */
    public const FEATURES_FILE = 'featpkg-features.json';

    /** MikoPBX: the selection the settings page recorded, kept in db/ across upgrades. */
    public const MIKOPBX_FEATURES = 'db/' . self::FEATURES_FILE;

    /** A feature id in FEATURES_FILE. */
    private const FEATURE_ID = '/^[a-z0-9][a-z0-9-]*$/D';

    /**
     * FreePBX: the settings page's data directory, under ASTVARLIBDIR: the
     * module directory is replaced on every upgrade, this one stays.
     */
    public const FREEPBX_DATA_DIR = 'featpkg-page';

    /** FreePBX: ASTVARLIBDIR when FreePBX's settings do not say. */
    public const FREEPBX_ASTVARLIBDIR = '/var/lib/asterisk';

    /** @var string the module directory (the extracted bundle) */
    private $moduleDir;

    /** @var string `uname -m` of this machine */
    private $machine;

    /** @var string FreePBX: the settings page's data directory */
    private $freepbxDataDir;

    /**
     * @param string|null $freepbxDataDir FreePBX: the settings page's data
     *        directory (default: self::freepbxDataDirFor(null))
     */
    public function __construct(string $moduleDir, ?string $machine = null, ?string $freepbxDataDir = null)
    {
        $this->moduleDir = rtrim($moduleDir, '/');
        $this->machine = $machine ?? php_uname('m');
        $this->freepbxDataDir = rtrim($freepbxDataDir ?? self::freepbxDataDirFor(null), '/');
    }

    public function moduleDir(): string
    {
        return $this->moduleDir;
    }

    /**
     * The bundle's binary directory for a `uname -m` value.
     *
     * @throws RuntimeException for a machine featpkg ships no binaries for
     */
    public static function archDir(string $machine): string
    {
        switch (strtolower(trim($machine))) {
            case 'x86_64':
            case 'amd64':
                return 'x86_64-linux';
            case 'aarch64':
            case 'arm64':
                return 'aarch64-linux';
        }
        throw new RuntimeException(sprintf(
            'featpkg ships binaries for x86_64 and aarch64 Linux only; this machine is "%s" (uname -m)',
            $machine
        ));
    }

    /** Path of the featpkg binary for this machine. */
    public function binary(): string
    {
        $path = $this->moduleDir . '/bin/' . self::archDir($this->machine) . '/featpkg';
        if (!is_file($path)) {
            throw new RuntimeException("the featpkg binary $path is missing: upload the module archive again");
        }
        if (!is_executable($path)) {
            throw new RuntimeException("the featpkg binary $path is not executable");
        }
        return $path;
    }

    /** The bundle's name, from the extracted bundle.json (featpkg's name for it). */
    public function bundleName(): string
    {
        $path = $this->moduleDir . '/bundle.json';
        $text = @file_get_contents($path);
        if ($text === false) {
            throw new RuntimeException("$path cannot be read: upload the module archive again");
        }
        $manifest = json_decode($text, true);
        if (!is_array($manifest) || !isset($manifest['name']) || !is_string($manifest['name']) || $manifest['name'] === '') {
            throw new RuntimeException("$path has no bundle name");
        }
        return $manifest['name'];
    }

    /**
     * The bundle's feature ids, from the extracted bundle.json.
     *
     * @return string[]
     */
    public function bundleFeatures(): array
    {
        $path = $this->moduleDir . '/bundle.json';
        $manifest = json_decode((string) @file_get_contents($path), true);
        $features = is_array($manifest) ? ($manifest['features'] ?? null) : null;
        if (!is_array($features)) {
            throw new RuntimeException("$path lists no features: upload the module archive again");
        }
        return array_values(array_filter($features, 'is_string'));
    }

    // ---- the admin's selection (FEATURES_FILE) ---------------------------------

    /**
     * The ids a features file lists (as saved), or null when there is no file.
     *
     * @return string[]|null
     * @throws RuntimeException naming the file and what is wrong with it
     */
    public static function readFeaturesFile(string $path): ?array
    {
        clearstatcache(true, $path);
        if (!file_exists($path)) {
            return null;
        }
        $fix = 'correct it, or delete it to let the module install every feature';
        $text = @file_get_contents($path);
        if ($text === false) {
            throw new RuntimeException("$path cannot be read");
        }
        $value = json_decode($text, false);
        if (json_last_error() !== JSON_ERROR_NONE) {
            throw new RuntimeException("$path is not JSON (" . json_last_error_msg() . "): $fix");
        }
        if (!($value instanceof \stdClass) || !property_exists($value, 'features') || !is_array($value->features)) {
            throw new RuntimeException("$path is not a JSON object {\"features\": [feature ids]}: $fix");
        }
        $ids = [];
        foreach ($value->features as $id) {
            if (!is_string($id) || !preg_match(self::FEATURE_ID, $id)) {
                throw new RuntimeException(sprintf(
                    '%s: %s is not a feature id (lower-case letters, digits and "-"): %s',
                    $path,
                    json_encode($id, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_INVALID_UTF8_SUBSTITUTE),
                    $fix
                ));
            }
            $ids[] = $id;
        }
        return $ids;
    }

    /** A features file's text: `$ids` sorted, each once. */
    public static function featuresFileText(array $ids): string
    {
        $ids = array_values(array_unique(array_map('strval', $ids)));
        sort($ids, SORT_STRING);
        return json_encode(['features' => $ids], JSON_PRETTY_PRINT | JSON_UNESCAPED_SLASHES) . "\n";
    }

    /**
     * The features of bundle `$bundle` that `featpkg status --json` printed as
     * installed, sorted (none when the bundle is not installed).
     *
     * @return string[]
     */
    public static function installedFeatures(string $statusJson, string $bundle): array
    {
        $bundles = json_decode($statusJson, true);
        if (!is_array($bundles)) {
            throw new RuntimeException('featpkg status --json printed no JSON array: ' . trim($statusJson));
        }
        $ids = [];
        foreach ($bundles as $entry) {
            if (!is_array($entry) || ($entry['name'] ?? null) !== $bundle) {
                continue;
            }
            foreach (is_array($entry['features'] ?? null) ? $entry['features'] : [] as $feature) {
                $id = is_array($feature) ? ($feature['id'] ?? null) : null;
                if (!is_string($id) || !preg_match(self::FEATURE_ID, $id)) {
                    throw new RuntimeException('featpkg status --json printed a feature without an id: ' . json_encode($feature));
                }
                $ids[] = $id;
            }
        }
        $ids = array_values(array_unique($ids));
        sort($ids, SORT_STRING);
        return $ids;
    }

    /**
     * What the module hooks install: null when no selection was recorded
     * (featpkg's default), else the recorded features this bundle still has
     * ([]: the admin removed every feature from the page).
     *
     * @return string[]|null
     */
    private function selection(string $featuresFile): ?array
    {
        $saved = self::readFeaturesFile($featuresFile);
        if ($saved === null) {
            return null;
        }
        // A feature an upgrade dropped is simply not installed any more.
        $ids = array_values(array_unique(array_intersect($saved, $this->bundleFeatures())));
        sort($ids, SORT_STRING);
        return $ids;
    }

    /**
     * Calls `$install` with the parameters file for --params (null: none):
     * the saved one, or, when it also holds features outside the selection
     * (featpkg refuses parameters for a feature it is not installing, e.g.
     * one the admin removed from the page), a private copy holding only the
     * selected features' entries, deleted afterwards. A file that is not a
     * JSON object goes to featpkg as it is, for featpkg to judge.
     *
     * @param string[]|null $selection
     * @param callable(?string): void $install
     */
    private function withSelectedParams(string $saved, ?array $selection, callable $install): void
    {
        if (!is_file($saved)) {
            $install(null);
            return;
        }
        $params = $selection === null ? null : json_decode((string) @file_get_contents($saved), false);
        if (!($params instanceof \stdClass)) {
            $install($saved);
            return;
        }
        $all = get_object_vars($params);
        $kept = [];
        foreach ($all as $feature => $values) {
            if (in_array((string) $feature, $selection, true)) {
                $kept[(string) $feature] = $values;
            }
        }
        if (count($kept) === count($all)) {
            $install($saved);
            return;
        }
        $text = json_encode((object) $kept, JSON_PRETTY_PRINT | JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE);
        if ($text === false) {
            throw new RuntimeException("$saved cannot be re-encoded: " . json_last_error_msg());
        }
        $copy = self::writePrivateFile(dirname($saved), 'install-params', $text . "\n");
        try {
            $install($copy);
        } finally {
            @unlink($copy);
        }
    }

    // ---- private files -----------------------------------------------------------

    /**
     * A new file `.featpkg-<tag>-<random>.json` in `$dir`, readable by this
     * user only (0600 before any byte is written), holding `$content`; returns its path.
     */
    public static function writePrivateFile(string $dir, string $tag, string $content): string
    {
        $old = umask(0077);
        try {
            $path = $dir . '/.featpkg-' . $tag . '-' . bin2hex(random_bytes(8)) . '.json';
            $h = @fopen($path, 'x');
        } finally {
            umask($old);
        }
        if ($h === false) {
            throw new RuntimeException("cannot create $path");
        }
        try {
            if (!chmod($path, 0600)) {
                throw new RuntimeException("cannot make $path private");
            }
            if (fwrite($h, $content) !== strlen($content) || !fflush($h)) {
                throw new RuntimeException("cannot write $path");
            }
        } catch (\Throwable $e) {
            fclose($h);
            @unlink($path);
            throw $e;
        }
        fclose($h);
        return $path;
    }

    /** Replaces `$path` with `$content` (0600) in one step: a private temp file renamed over it. */
    public static function replaceFile(string $path, string $content): void
    {
        $tmp = self::writePrivateFile(dirname($path), 'tmp', $content);
        if (!@rename($tmp, $path)) {
            @unlink($tmp);
            throw new RuntimeException("cannot replace $path");
        }
    }

    /**
     * Runs featpkg with `$args` (no shell) and returns what it printed.
     *
     * @param string[] $args
     * @return array{stdout: string, stderr: string, code: int}
     */
    public function exec(array $args): array
    {
        $command = array_merge([$this->binary()], array_map('strval', array_values($args)));
        $stdout = tmpfile();
        $stderr = tmpfile();
        if ($stdout === false || $stderr === false) {
            throw new RuntimeException('cannot create temporary files for featpkg\'s output');
        }
        $process = proc_open($command, [0 => ['file', '/dev/null', 'r'], 1 => $stdout, 2 => $stderr], $pipes);
        if (!is_resource($process)) {
            throw new RuntimeException("cannot start {$command[0]}");
        }
        $code = proc_close($process);
        rewind($stdout);
        rewind($stderr);
        $result = [
            'stdout' => (string) stream_get_contents($stdout),
            'stderr' => (string) stream_get_contents($stderr),
            'code' => (int) $code,
        ];
        fclose($stdout);
        fclose($stderr);
        return $result;
    }

    /**
     * Runs featpkg; a non-zero exit is an exception carrying featpkg's message
     * for the admin (its stderr).
     *
     * @param string[] $args
     * @return string featpkg's stdout
     */
    public function run(array $args): string
    {
        $result = $this->exec($args);
        if ($result['code'] !== 0) {
            $message = trim($result['stderr']);
            if ($message === '') {
                $message = trim($result['stdout']);
            }
            throw new RuntimeException(sprintf(
                'featpkg %s failed (exit %d): %s',
                $args[0] ?? '',
                $result['code'],
                $message === '' ? 'it printed no message' : $message
            ));
        }
        return $result['stdout'];
    }

    /**
     * Whether featpkg's state records this bundle as installed on the target.
     *
     * @param string[] $targetArgs
     */
    public function isInstalled(array $targetArgs): bool
    {
        $text = $this->run(array_merge(['status', '--json'], $targetArgs));
        $bundles = json_decode($text, true);
        if (!is_array($bundles)) {
            throw new RuntimeException('featpkg status --json printed no JSON array: ' . trim($text));
        }
        $name = $this->bundleName();
        foreach ($bundles as $bundle) {
            if (is_array($bundle) && ($bundle['name'] ?? null) === $name) {
                return true;
            }
        }
        return false;
    }

    // ---- MikoPBX ----------------------------------------------------------

    /** @return string[] */
    public function mikopbxTargetArgs(): array
    {
        return ['--target', 'mikopbx', '--module-dir', $this->moduleDir, '--lock-wait', (string) self::LOCK_WAIT];
    }

    /** The admin allowed changes that restart Asterisk (db/featpkg-settings.json). */
    public function mikopbxAllowRestart(): bool
    {
        $path = $this->moduleDir . '/' . self::MIKOPBX_SETTINGS;
        if (!is_file($path)) {
            return false;
        }
        $settings = json_decode((string) file_get_contents($path), true);
        if (!is_array($settings)) {
            throw new RuntimeException("$path is not a JSON object");
        }
        return ($settings['allow_restart'] ?? false) === true;
    }

    /** MikoPBX: the selection the settings page recorded (it may not exist). */
    public function mikopbxFeaturesFile(): string
    {
        return $this->moduleDir . '/' . self::MIKOPBX_FEATURES;
    }

    /**
     * featpkg's arguments for the enable hooks' install: the recorded
     * selection (db/featpkg-features.json) as --features when there is one;
     * null when that selection is empty (nothing to install).
     *
     * @param string|null $params the file for --params (default: db/featpkg-params.json when it exists)
     * @return string[]|null
     */
    public function mikopbxInstallArgs(?string $params = null): ?array
    {
        $features = $this->selection($this->mikopbxFeaturesFile());
        if ($features === []) {
            return null;
        }
        $args = array_merge(['install', $this->moduleDir], $this->mikopbxTargetArgs());
        $saved = $this->moduleDir . '/' . self::MIKOPBX_PARAMS;
        $params = $params ?? (is_file($saved) ? $saved : null);
        if ($params !== null) {
            $args[] = '--params';
            $args[] = $params;
        }
        if ($features !== null) {
            $args[] = '--features';
            $args[] = implode(',', $features);
        }
        if ($this->mikopbxAllowRestart()) {
            $args[] = '--allow-restart';
        }
        return $args;
    }

    /** @return string[] */
    public function mikopbxUninstallArgs(): array
    {
        $args = array_merge(['uninstall', $this->bundleName()], $this->mikopbxTargetArgs());
        if ($this->mikopbxAllowRestart()) {
            $args[] = '--allow-restart';
        }
        return $args;
    }

    /**
     * Installs (or, with $dryRun, only checks) the bundle's features on
     * MikoPBX: the ones the settings page recorded, else featpkg's default.
     * When the admin removed every feature from the page, featpkg does not
     * run at all: the module is enabled with nothing installed.
     */
    public function mikopbxInstall(bool $dryRun = false): void
    {
        $selection = $this->selection($this->mikopbxFeaturesFile());
        if ($selection === []) {
            return;
        }
        $saved = $this->moduleDir . '/' . self::MIKOPBX_PARAMS;
        $this->withSelectedParams($saved, $selection, function (?string $params) use ($dryRun): void {
            $args = $this->mikopbxInstallArgs($params);
            if ($args !== null) {
                $this->run(array_merge($args, $dryRun ? ['--dry-run'] : []));
            }
        });
    }

    /**
     * Uninstalls (or, with $dryRun, only checks) the bundle on MikoPBX.
     * Returns false when it is not installed (nothing to do).
     */
    public function mikopbxUninstall(bool $dryRun = false): bool
    {
        if (!$this->isInstalled($this->mikopbxTargetArgs())) {
            return false;
        }
        $this->run(array_merge($this->mikopbxUninstallArgs(), $dryRun ? ['--dry-run'] : []));
        return true;
    }

    /** The same uninstall with --force: hand edits inside featpkg's own blocks are overwritten. */
    public function mikopbxForcedUninstall(): void
    {
        $this->run(array_merge($this->mikopbxUninstallArgs(), ['--force']));
    }

    // ---- FreePBX ----------------------------------------------------------

    /** FreePBX: the settings page's data directory for an ASTVARLIBDIR (null or '': the default). */
    public static function freepbxDataDirFor(?string $astVarLibDir): string
    {
        return self::freepbxAstVarLibDir($astVarLibDir) . '/' . self::FREEPBX_DATA_DIR;
    }

    /** FreePBX: featpkg's own state directory (state.db, lock, machine.key, journal/) for an ASTVARLIBDIR. */
    public static function freepbxStateDirFor(?string $astVarLibDir): string
    {
        return self::freepbxAstVarLibDir($astVarLibDir) . '/featpkg';
    }

    private static function freepbxAstVarLibDir(?string $astVarLibDir): string
    {
        $base = ($astVarLibDir === null || trim($astVarLibDir) === '') ? self::FREEPBX_ASTVARLIBDIR : trim($astVarLibDir);
        return rtrim($base, '/');
    }

    /** FreePBX: the settings page's data directory (parameters, jobs). */
    public function freepbxDataDir(): string
    {
        return $this->freepbxDataDir;
    }

    /** FreePBX: where the settings page keeps the parameters the admin saved (it may not exist). */
    public function freepbxParamsFile(): string
    {
        return $this->freepbxDataDir . '/' . self::PARAMS_FILE;
    }

    /** FreePBX: the selection the settings page recorded (it may not exist). */
    public function freepbxFeaturesFile(): string
    {
        return $this->freepbxDataDir . '/' . self::FEATURES_FILE;
    }

    /**
     * featpkg's arguments for install(): the recorded selection as
     * --features when there is one; null when that selection is empty.
     *
     * @param string|null $params the file for --params (default: the saved parameters when they exist)
     * @return string[]|null
     */
    public function freepbxInstallArgs(?string $params = null): ?array
    {
        $features = $this->selection($this->freepbxFeaturesFile());
        if ($features === []) {
            return null;
        }
        $args = ['install', $this->moduleDir, '--target', 'freepbx'];
        $saved = $this->freepbxParamsFile();
        $params = $params ?? (is_file($saved) ? $saved : null);
        if ($params !== null) {
            $args[] = '--params';
            $args[] = $params;
        }
        if ($features !== null) {
            $args[] = '--features';
            $args[] = implode(',', $features);
        }
        return $args;
    }

    /** @return string[] */
    public function freepbxUninstallArgs(): array
    {
        return ['uninstall', $this->bundleName(), '--target', 'freepbx'];
    }

    /**
     * Installs or upgrades the features (the ones the settings page recorded,
     * else featpkg's default; none when the admin removed them all); again
     * with the same module: "up to date".
     */
    public function freepbxInstall(): void
    {
        $selection = $this->selection($this->freepbxFeaturesFile());
        if ($selection === []) {
            return;
        }
        $this->withSelectedParams($this->freepbxParamsFile(), $selection, function (?string $params): void {
            $args = $this->freepbxInstallArgs($params);
            if ($args !== null) {
                $this->run($args);
            }
        });
    }

    /** Uninstalls the bundle; false when it is not installed. */
    public function freepbxUninstall(): bool
    {
        if (!$this->isInstalled(['--target', 'freepbx'])) {
            return false;
        }
        $this->run($this->freepbxUninstallArgs());
        return true;
    }

    /**
     * The installed features' destinations:
     * [['destination' => 'context,exten,1', 'description' => …, 'feature' => …], …].
     *
     * @return array<int, array{destination: string, description: string, feature: string}>
     */
    public function freepbxDestinations(): array
    {
        $text = $this->run(['destinations', '--target', 'freepbx']);
        $list = json_decode($text, true);
        if (!is_array($list)) {
            throw new RuntimeException('featpkg destinations printed no JSON array: ' . trim($text));
        }
        $out = [];
        foreach ($list as $item) {
            if (!is_array($item) || !is_string($item['destination'] ?? null)) {
                throw new RuntimeException('featpkg destinations printed an entry without a destination: ' . json_encode($item));
            }
            $out[] = [
                'destination' => $item['destination'],
                'description' => (string) ($item['description'] ?? $item['destination']),
                'feature' => (string) ($item['feature'] ?? ''),
            ];
        }
        return $out;
    }
}
