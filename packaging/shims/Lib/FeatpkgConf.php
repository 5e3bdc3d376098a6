<?php
/*
 * MikoPBX hook class of the featpkg module (class name: the module id without
 * "Module", plus "Conf"). Enabling the module installs the bundle's features
 * with the bundled featpkg; disabling takes them back out.
 *
 * Why these hooks (mikopbx/Core src/Modules/PbxExtensionState.php):
 * - onBeforeModuleEnable/onBeforeModuleDisable are called first inside the
 *   enable/disable check (makeBeforeEnableTest / makeBeforeDisableTest). There,
 *   returning false refuses the enable/disable and MikoPBX shows getMessages()
 *   to the admin. The check runs in an open transaction on the main database
 *   (the enable check has already saved the module row in it), so writing the
 *   configuration from there could wait on MikoPBX's own lock: these hooks run
 *   featpkg with --dry-run, which checks everything (parameters, collisions,
 *   the restart rule) and writes nothing. Both are called a second time after
 *   the check; a second dry run is harmless.
 * - onAfterModuleEnable/onAfterModuleDisable do the real work. MikoPBX has
 *   already saved the module's new state (disabled='0' or '1') when it calls
 *   them, and nothing catches what they throw (an exception would leave the
 *   REST call unanswered). So a failure puts the module's row back the way
 *   featpkg's state is: a failed install leaves the module disabled, with
 *   disableReason DisabledByException and featpkg's message as the reason
 *   text (shown in the module list, and logged); a failed uninstall leaves it
 *   enabled. featpkg rolls its own transaction back on failure, so nothing is
 *   left half-installed.
 * - ReloadModuleStateAction (WorkerModelsEvents) calls the same After hook
 *   again a few seconds later, in another process. featpkg waits for the
 *   first run's lock (FeatpkgRunner::LOCK_WAIT) and then finds the features
 *   up to date, or, after a failure, not installed: it does nothing.
 * - generateModulesConf() hands MikoPBX's modules.conf generator the `load =>`
 *   lines featpkg wrote into the module's db/hooks/generateModulesConf.conf
 *   (featpkg owns that file: planned, journalled, verified, rolled back like
 *   any other). MikoPBX calls it only while the module is enabled.
 * - moduleRestAPICallback() serves the module's settings page
 *   (`/pbxcore/api/modules/ModuleFeatpkg/<action>`, MikoPBX's legacy module
 *   REST route, run as root by WorkerApiCommands): Lib/FeatpkgPage.php routes
 *   each whitelisted action to one featpkg command line. Its data lives in
 *   the module's db/, which MikoPBX keeps across upgrades: the parameters in
 *   db/featpkg-params.json (what the enable path passes with --params), the
 *   features installed after the page's last change in
 *   db/featpkg-features.json (what it passes with --features; an empty list:
 *   the enable installs nothing), the restart permission in
 *   db/featpkg-settings.json, the jobs in db/page-jobs/.
 */

namespace Modules\ModuleFeatpkg\Lib;

use MikoPBX\Common\Models\PbxExtensionModules;
use MikoPBX\Core\System\SystemMessages;
use MikoPBX\Modules\Config\ConfigClass;
use MikoPBX\PBXCoreREST\Lib\PBXApiResult;
use Throwable;

class FeatpkgConf extends ConfigClass
{
    /** Checks that featpkg can install the features; refuses the enable (with featpkg's message) otherwise. */
    public function onBeforeModuleEnable(): bool
    {
        try {
            $this->runner()->mikopbxInstall(true);
            return true;
        } catch (Throwable $e) {
            $this->refuse($e);
            return false;
        }
    }

    /** Installs the features; on failure the module goes back to disabled, with featpkg's message. */
    public function onAfterModuleEnable(): void
    {
        try {
            $this->runner()->mikopbxInstall(false);
        } catch (Throwable $e) {
            $this->failure($e);
            $this->setModuleRow('1', 'DisabledByException', $e->getMessage());
        }
    }

    /** Checks that featpkg can take the features out; refuses the disable (with featpkg's message) otherwise. */
    public function onBeforeModuleDisable(): bool
    {
        try {
            $this->runner()->mikopbxUninstall(true);
            return true;
        } catch (Throwable $e) {
            $this->refuse($e);
            return false;
        }
    }

    /** Uninstalls the features (restoring exactly what featpkg changed); on failure the module stays enabled. */
    public function onAfterModuleDisable(): void
    {
        try {
            $this->runner()->mikopbxUninstall(false);
        } catch (Throwable $e) {
            $this->failure($e);
            $this->setModuleRow('0', '', '');
        }
    }

    /** modules.conf: the `load =>` lines of the installed features (empty when none). */
    public function generateModulesConf(): string
    {
        $text = @file_get_contents($this->runner()->moduleDir() . '/' . FeatpkgRunner::MIKOPBX_MODULES_HOOK);
        return $text === false ? '' : $text;
    }

    /**
     * The settings page's requests: `$request['action']` names the action,
     * its fields come from `$request['data']` (2024.1: $_REQUEST; 2026: query
     * and parsed body), completed from the raw body `$request['input']`
     * (form-encoded or a JSON object) for the fields `data` lacks.
     */
    public function moduleRestAPICallback(array $request): PBXApiResult
    {
        $res = new PBXApiResult();
        $res->processor = __METHOD__;
        $action = is_string($request['action'] ?? null) ? $request['action'] : '';
        $res->function = $action;
        try {
            $runner = $this->runner();
            $page = new FeatpkgPage(
                $runner,
                'mikopbx',
                $runner->moduleDir() . '/db',
                $runner->mikopbxTargetArgs(),
                self::language()
            );
            $method = $request['REQUEST_METHOD'] ?? ($request['httpMethod'] ?? '');
            $res->data = $page->handle($action, self::requestFields($request), is_string($method) ? $method : '');
            $res->success = true;
        } catch (FeatpkgPageError $e) {
            $this->pageFailure($res, $e->status(), $e->getMessage());
        } catch (Throwable $e) {
            $this->pageFailure($res, 500, $e->getMessage());
        }
        return $res;
    }

    private function pageFailure(PBXApiResult $res, int $status, string $message): void
    {
        $res->success = false;
        $res->data = ['code' => $status];
        $res->messages['error'][] = $message;
        if (property_exists($res, 'httpCode')) {
            // 2026: the REST reply's HTTP status.
            $res->httpCode = $status;
        }
        if ($status >= 500) {
            self::log("settings page: $message");
        }
    }

    /**
     * The request's fields: `data`, plus those only the raw body has. Scalars
     * become strings (true/false as "1"/"0"); arrays stay (and are refused).
     *
     * @return array<string, mixed>
     */
    private static function requestFields(array $request): array
    {
        $fields = is_array($request['data'] ?? null) ? $request['data'] : [];
        $input = $request['input'] ?? '';
        if (is_string($input) && trim($input) !== '') {
            $body = json_decode($input, true);
            if (!is_array($body) || substr(ltrim($input), 0, 1) !== '{') {
                $body = [];
                parse_str($input, $body);
            }
            foreach ($body as $name => $value) {
                if (!array_key_exists($name, $fields)) {
                    $fields[$name] = $value;
                }
            }
        }
        foreach ($fields as $name => $value) {
            if (is_bool($value)) {
                $fields[$name] = $value ? '1' : '0';
            } elseif (is_int($value) || is_float($value)) {
                $fields[$name] = (string) $value;
            }
        }
        return $fields;
    }

    /** The admin interface's language (PbxSettings), "" when MikoPBX does not say. */
    private static function language(): string
    {
        $class = 'MikoPBX\Common\Models\PbxSettings';
        try {
            if (class_exists($class) && is_callable([$class, 'getValueByKey'])) {
                foreach (['WebAdminLanguage', 'PBXLanguage'] as $key) {
                    $value = call_user_func([$class, 'getValueByKey'], $key);
                    if (is_string($value) && $value !== '') {
                        return $value;
                    }
                }
            }
        } catch (Throwable $e) {
            // The page works without it.
        }
        return '';
    }

    private function runner(): FeatpkgRunner
    {
        return new FeatpkgRunner(dirname(__DIR__));
    }

    private function refuse(Throwable $e): void
    {
        $this->messages['error'][] = $e->getMessage();
        self::log($e->getMessage());
    }

    private function failure(Throwable $e): void
    {
        $this->messages['error'][] = $e->getMessage();
        self::log($e->getMessage());
    }

    /**
     * Puts the module's row in m_PbxExtensionModules to `$disabled` (what
     * featpkg's state says after a failed install or uninstall), with the reason.
     */
    private function setModuleRow(string $disabled, string $reason, string $reasonText): void
    {
        try {
            $module = PbxExtensionModules::findFirstByUniqid($this->moduleUniqueId);
            if ($module === null) {
                return;
            }
            $module->disabled = $disabled;
            $module->disableReason = $reason;
            $module->disableReasonText = $reasonText;
            if ($module->save() === false) {
                self::log('could not save the module state: ' . implode('; ', array_map('strval', $module->getMessages())));
            }
        } catch (Throwable $e) {
            self::log('could not save the module state: ' . $e->getMessage());
        }
    }

    /** Logs an error the way MikoPBX modules do (syslog through SystemMessages). */
    public static function log(string $message): void
    {
        if (class_exists(SystemMessages::class)) {
            SystemMessages::sysLogMsg('ModuleFeatpkg', $message, LOG_ERR);
        } elseif (is_callable(['MikoPBX\Core\System\Util', 'sysLogMsg'])) {
            call_user_func(['MikoPBX\Core\System\Util', 'sysLogMsg'], 'ModuleFeatpkg', $message, LOG_ERR);
        } else {
            error_log("ModuleFeatpkg: $message");
        }
    }
}
