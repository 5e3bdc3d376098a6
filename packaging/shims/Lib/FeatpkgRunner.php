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

    /** @return string[] */
    public function mikopbxInstallArgs(): array
    {
        $args = array_merge(['install', $this->moduleDir], $this->mikopbxTargetArgs());
        $params = $this->moduleDir . '/' . self::MIKOPBX_PARAMS;
        if (is_file($params)) {
            $args[] = '--params';
            $args[] = $params;
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

    /** Installs (or, with $dryRun, only checks) the bundle's features on MikoPBX. */
    public function mikopbxInstall(bool $dryRun = false): void
    {
        $this->run(array_merge($this->mikopbxInstallArgs(), $dryRun ? ['--dry-run'] : []));
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
        $base = ($astVarLibDir === null || trim($astVarLibDir) === '') ? self::FREEPBX_ASTVARLIBDIR : trim($astVarLibDir);
        return rtrim($base, '/') . '/' . self::FREEPBX_DATA_DIR;
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

    /** @return string[] */
    public function freepbxInstallArgs(): array
    {
        $args = ['install', $this->moduleDir, '--target', 'freepbx'];
        $params = $this->freepbxParamsFile();
        if (is_file($params)) {
            $args[] = '--params';
            $args[] = $params;
        }
        return $args;
    }

    /** @return string[] */
    public function freepbxUninstallArgs(): array
    {
        return ['uninstall', $this->bundleName(), '--target', 'freepbx'];
    }

    /** Installs or upgrades the features; again with the same module: "up to date". */
    public function freepbxInstall(): void
    {
        $this->run($this->freepbxInstallArgs());
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
